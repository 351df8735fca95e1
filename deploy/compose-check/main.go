// Command compose-check loads docker-compose.yml with compose-go (the Compose Specification's reference
// loader, schema validation included) and checks what Docker would only find at run time: every build
// context and Dockerfile exists, every bind-mounted file or directory exists, every image is pinned.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check <docker-compose.yml>")
		os.Exit(2)
	}
	path, _ := filepath.Abs(os.Args[1])
	dir := filepath.Dir(path)
	opts, err := cli.NewProjectOptions([]string{path}, cli.WithWorkingDirectory(dir), cli.WithName("extsvc"), cli.WithProfiles([]string{"*"}))
	if err != nil {
		fail(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	var problems []string
	for name, svc := range project.Services {
		if svc.Build != nil {
			df := svc.Build.Dockerfile
			if !filepath.IsAbs(df) {
				df = filepath.Join(svc.Build.Context, df)
			}
			if _, err := os.Stat(df); err != nil {
				problems = append(problems, fmt.Sprintf("services.%s.build: %v", name, err))
			}
		} else if svc.Image == "" || !strings.Contains(svc.Image, ":") || strings.HasSuffix(svc.Image, ":latest") {
			problems = append(problems, fmt.Sprintf("services.%s.image: %q is not pinned to a version", name, svc.Image))
		}
		for _, v := range svc.Volumes {
			if v.Type == "bind" {
				if _, err := os.Stat(v.Source); err != nil {
					problems = append(problems, fmt.Sprintf("services.%s.volumes: %v", name, err))
				}
			}
		}
	}
	if len(problems) > 0 {
		fail(fmt.Errorf("%s", strings.Join(problems, "\n")))
	}
	fmt.Printf("%s: %d services OK\n", filepath.Base(path), len(project.Services))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "compose-check:", err)
	os.Exit(1)
}
