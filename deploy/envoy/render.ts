// Renders deploy/envoy/envoy.template.yaml. Used by the integration harness (loopback ports) and to
// produce envoy.compose.yaml for docker-compose. Usage:
//   node deploy/envoy/render.ts --compose            print the compose rendering
//   node deploy/envoy/render.ts --check-compose      exit 1 if envoy.compose.yaml is out of date
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Values substituted into the template; booleans drive the {{#if}} / {{#unless}} blocks. */
export interface EnvoyVars {
  readonly ADMIN_ADDRESS: string;
  readonly ADMIN_PORT: number;
  readonly LISTEN_ADDRESS: string;
  readonly HTTP_PORT: number;
  readonly HTTPS_PORT: number;
  /** true: ext_authz over gRPC; false: raw HTTP mode shaped like Emissary's AuthService proto: http. */
  readonly AUTHZ_GRPC: boolean;
  readonly AUTHZ_FAILURE_MODE_ALLOW: boolean;
  readonly AUTHZ_TIMEOUT: string;
  readonly AUTHZ_PATH_PREFIX: string;
  readonly AUTHZ_HOST: string;
  readonly AUTHZ_GRPC_PORT: number;
  readonly AUTHZ_HTTP_PORT: number;
  readonly RATELIMIT_DOMAIN: string;
  readonly RATELIMIT_GENERIC_KEY: string;
  readonly RATELIMIT_TIMEOUT: string;
  readonly RATELIMIT_FAILURE_MODE_DENY: boolean;
  readonly RATELIMIT_HOST: string;
  readonly RATELIMIT_GRPC_PORT: number;
  readonly ACME_HOST: string;
  readonly ACME_CHALLENGE_PORT: number;
  readonly UPSTREAM_HOST: string;
  readonly UPSTREAM_PORT: number;
  /** true: add the HTTPS listener whose certificate comes from acme's SDS file. */
  readonly TLS: boolean;
  readonly CERT_DIR: string;
  readonly TLS_SECRET: string;
}

/** Defaults shared by every rendering (ports are the services' defaults). */
export const ENVOY_DEFAULTS: EnvoyVars = {
  ADMIN_ADDRESS: '127.0.0.1',
  ADMIN_PORT: 9901,
  LISTEN_ADDRESS: '0.0.0.0',
  HTTP_PORT: 8000,
  HTTPS_PORT: 8443,
  AUTHZ_GRPC: true,
  AUTHZ_FAILURE_MODE_ALLOW: false,
  AUTHZ_TIMEOUT: '0.5s',
  AUTHZ_PATH_PREFIX: '/extauth',
  AUTHZ_HOST: '127.0.0.1',
  AUTHZ_GRPC_PORT: 9001,
  AUTHZ_HTTP_PORT: 9002,
  RATELIMIT_DOMAIN: 'extsvc',
  RATELIMIT_GENERIC_KEY: 'per_client',
  RATELIMIT_TIMEOUT: '0.1s',
  RATELIMIT_FAILURE_MODE_DENY: false,
  RATELIMIT_HOST: '127.0.0.1',
  RATELIMIT_GRPC_PORT: 8081,
  ACME_HOST: '127.0.0.1',
  ACME_CHALLENGE_PORT: 8089,
  UPSTREAM_HOST: '127.0.0.1',
  UPSTREAM_PORT: 8070,
  TLS: false,
  CERT_DIR: '/var/lib/extsvc/certs',
  TLS_SECRET: 'default/example-tls',
};

/** The docker-compose rendering: service names as hosts, admin on all interfaces inside the container. */
export const COMPOSE_VARS: EnvoyVars = {
  ...ENVOY_DEFAULTS,
  ADMIN_ADDRESS: '0.0.0.0',
  AUTHZ_HOST: 'authz',
  RATELIMIT_HOST: 'ratelimit',
  ACME_HOST: 'acme',
  UPSTREAM_HOST: 'upstream',
  UPSTREAM_PORT: 8080,
  TLS: true,
  CERT_DIR: '/certs',
};

/** Path of the template in this repository. */
export const TEMPLATE_PATH = join(import.meta.dirname, 'envoy.template.yaml');

/** Expands `{{>NAME K=V ...}}` lines with the `{{#define NAME}}` blocks, re-indented to the include line. */
function expandIncludes(template: string): string[] {
  const defines = new Map<string, string[]>();
  const body: string[] = [];
  let current: { name: string; lines: string[] } | undefined;
  for (const line of template.split('\n')) {
    const def = /^# \{\{#define ([A-Z_]+)\}\}\s*$/.exec(line);
    if (def) {
      if (current) throw new Error('envoy template: nested #define');
      current = { name: def[1] as string, lines: [] };
      continue;
    }
    if (/^# \{\{\/define\}\}\s*$/.test(line)) {
      if (!current) throw new Error('envoy template: /define without #define');
      defines.set(current.name, current.lines);
      current = undefined;
      continue;
    }
    (current ? current.lines : body).push(line);
  }
  if (current) throw new Error(`envoy template: unclosed #define ${current.name}`);
  const out: string[] = [];
  for (const line of body) {
    const inc = /^(\s*)# \{\{>([A-Z_]+)((?: [A-Z_]+=[^\s}]*)*)\}\}\s*$/.exec(line);
    if (!inc) {
      out.push(line);
      continue;
    }
    const block = defines.get(inc[2] as string);
    if (!block) throw new Error(`envoy template: no #define for {{>${inc[2]}}}`);
    const locals = new Map<string, string>();
    for (const kv of (inc[3] ?? '').trim().split(' ').filter(Boolean)) {
      const eq = kv.indexOf('=');
      locals.set(kv.slice(0, eq), kv.slice(eq + 1));
    }
    const indent = inc[1] ?? '';
    for (const b of block) {
      const local = b.replace(/\{\{([A-Z_]+)\}\}/g, (m, name: string) => locals.get(name) ?? m);
      out.push(b === '' ? '' : indent + local);
    }
  }
  return out;
}

/** Renders the template with `vars`; throws naming any placeholder without a value. */
export function renderEnvoyConfig(vars: EnvoyVars, template = readFileSync(TEMPLATE_PATH, 'utf8')): string {
  const values = vars as unknown as Record<string, string | number | boolean>;
  const out: string[] = [];
  const stack: boolean[] = [];
  for (const line of expandIncludes(template)) {
    const open = /^\s*# \{\{#(if|unless) ([A-Z_]+)\}\}\s*$/.exec(line);
    if (open) {
      const v = values[open[2] as string];
      if (typeof v !== 'boolean') throw new Error(`envoy template: ${open[2]} must be a boolean`);
      stack.push(open[1] === 'if' ? v : !v);
      continue;
    }
    if (/^\s*# \{\{\/(if|unless)\}\}\s*$/.test(line)) {
      if (stack.pop() === undefined) throw new Error('envoy template: unbalanced block');
      continue;
    }
    if (stack.includes(false)) continue;
    out.push(
      line.replace(/\{\{([A-Z_]+)\}\}/g, (_m, name: string) => {
        const v = values[name];
        if (v === undefined) throw new Error(`envoy template: no value for {{${name}}}`);
        return String(v);
      }),
    );
  }
  if (stack.length > 0) throw new Error('envoy template: unclosed block');
  return out.join('\n');
}

const COMPOSE_HEADER =
  '# GENERATED from envoy.template.yaml by `node deploy/envoy/render.ts --compose`; do not edit.\n';

/** The committed compose rendering. */
export function renderCompose(): string {
  return COMPOSE_HEADER + renderEnvoyConfig(COMPOSE_VARS);
}

if (import.meta.main) {
  const arg = process.argv[2];
  if (arg === '--compose') process.stdout.write(renderCompose());
  else if (arg === '--check-compose') {
    const current = readFileSync(join(import.meta.dirname, 'envoy.compose.yaml'), 'utf8');
    if (current !== renderCompose()) {
      process.stderr.write(
        'deploy/envoy/envoy.compose.yaml is out of date: run node deploy/envoy/render.ts --compose > deploy/envoy/envoy.compose.yaml\n',
      );
      process.exit(1);
    }
  } else {
    process.stdout.write(renderEnvoyConfig(ENVOY_DEFAULTS));
  }
}
