// Refreshes the vendored Envoy API protos from Maven Central's io.envoyproxy.controlplane:api jar.
// Usage: node proto/refresh.ts [version]. Copies the import closure of the roots below, records the
// source in proto/SOURCE.md and fails when an import cannot be found in the jar.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const version = process.argv[2] ?? '1.0.49';
const roots = [
  'envoy/service/auth/v3/external_auth.proto',
  'envoy/service/ratelimit/v3/rls.proto',
  'envoy/extensions/common/ratelimit/v3/ratelimit.proto',
];
// Well-known types ship with protobufjs (@grpc/proto-loader includes them); grpc health is vendored separately.
const provided = (p: string): boolean => p.startsWith('google/protobuf/');

const protoDir = import.meta.dirname;
const work = mkdtempSync(join(tmpdir(), 'envoy-api-'));
try {
  const url = `https://repo1.maven.org/maven2/io/envoyproxy/controlplane/api/${version}/api-${version}.jar`;
  const jar = join(work, 'api.jar');
  execFileSync('curl', ['-sSfL', '-o', jar, url]);
  const sha256 = createHash('sha256').update(readFileSync(jar)).digest('hex');
  execFileSync('unzip', ['-q', jar, '*.proto', '-d', join(work, 'x')]);
  const seen = new Set<string>();
  const missing: string[] = [];
  const queue = [...roots];
  while (queue.length > 0) {
    const p = queue.shift() as string;
    if (seen.has(p) || provided(p)) continue;
    const src = join(work, 'x', p);
    if (!existsSync(src)) {
      missing.push(p);
      continue;
    }
    seen.add(p);
    const text = readFileSync(src, 'utf8');
    for (const m of text.matchAll(/^import\s+(?:public\s+)?"([^"]+)";/gm)) queue.push(m[1] as string);
  }
  if (missing.length > 0) {
    process.stderr.write(`missing imports in api-${version}.jar: ${missing.join(', ')}\n`);
    process.exit(1);
  }
  for (const top of ['envoy', 'google', 'validate', 'udpa', 'xds'])
    rmSync(join(protoDir, top), { recursive: true, force: true });
  const files = [...seen].sort();
  for (const p of files) {
    mkdirSync(dirname(join(protoDir, p)), { recursive: true });
    writeFileSync(join(protoDir, p), readFileSync(join(work, 'x', p)));
  }
  writeFileSync(
    join(protoDir, 'SOURCE.md'),
    [
      '# Vendored protos',
      '',
      `- Source: Maven Central io.envoyproxy.controlplane:api:${version}`,
      `- URL: ${url}`,
      `- sha256 of the jar: ${sha256}`,
      `- Roots: ${roots.join(', ')}`,
      '- google/protobuf/* are not vendored: protobufjs (via @grpc/proto-loader) ships the well-known types.',
      '- grpc/health/v1/health.proto is from grpc/grpc-proto (Apache-2.0), kept by hand.',
      '- License: Apache-2.0 (envoyproxy/data-plane-api, cncf/xds, bufbuild/protoc-gen-validate, googleapis); see LICENSE.',
      '- Refresh: `node proto/refresh.ts <version>` then `bash proto/generate.sh`.',
      '',
      '## Files',
      '',
      ...files.map((f) => `- ${f}`),
      '',
    ].join('\n'),
  );
  process.stdout.write(`vendored ${files.length} files from api-${version}.jar\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
