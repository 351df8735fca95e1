import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  COMPOSE_VARS,
  ENVOY_DEFAULTS,
  renderEnvoyConfig,
  type EnvoyVars,
} from '../../deploy/envoy/render.ts';
import { parse } from 'yaml';
import { envoyBin, ROOT } from '../harness/stack.ts';
import { fakeCertDir } from './tls-fixture.ts';

function validate(vars: EnvoyVars): { status: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'extsvc-envoy-config-'));
  try {
    const file = join(dir, 'envoy.yaml');
    writeFileSync(file, renderEnvoyConfig(vars));
    const r = spawnSync(envoyBin(), ['--mode', 'validate', '-c', file, '--use-dynamic-base-id'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { status: r.status, output: r.stdout + r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('deploy/envoy: the shipped configuration validates with the real Envoy', function () {
  this.timeout(60_000);
  it('gRPC ext_authz rendering (the default)', () => {
    const r = validate(ENVOY_DEFAULTS);
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /OK/);
  });
  it('raw HTTP ext_authz rendering (Emissary AuthService proto: http shape)', () => {
    const r = validate({ ...ENVOY_DEFAULTS, AUTHZ_GRPC: false });
    assert.equal(r.status, 0, r.output);
  });
  it('docker-compose rendering, with the TLS listener reading acme SDS files', () => {
    const certs = fakeCertDir(COMPOSE_VARS.TLS_SECRET);
    try {
      const r = validate({ ...COMPOSE_VARS, CERT_DIR: certs.dir });
      assert.equal(r.status, 0, r.output);
    } finally {
      rmSync(certs.dir, { recursive: true, force: true });
    }
  });
  it('a broken rendering is rejected (the check can fail)', () => {
    const r = validate({ ...ENVOY_DEFAULTS, AUTHZ_TIMEOUT: 'soon' });
    assert.notEqual(r.status, 0);
  });
  it('envoy.compose.yaml is the current rendering of the template', () => {
    const committed = readFileSync(join(ROOT, 'deploy', 'envoy', 'envoy.compose.yaml'), 'utf8');
    assert.ok(committed.endsWith(renderEnvoyConfig(COMPOSE_VARS)));
  });
  it('the template rejects a missing value and unbalanced blocks', () => {
    assert.throws(() => renderEnvoyConfig(ENVOY_DEFAULTS, 'x: {{NOPE}}'), /no value for \{\{NOPE\}\}/);
    assert.throws(() => renderEnvoyConfig(ENVOY_DEFAULTS, '# {{#if TLS}}\nx: 1'), /unclosed block/);
  });
});

interface Hcm {
  readonly stat_prefix: string;
  readonly use_remote_address?: boolean;
  readonly normalize_path?: boolean;
  readonly merge_slashes?: boolean;
  readonly path_with_escaped_slashes_action?: string;
  readonly common_http_protocol_options?: { headers_with_underscores_action?: string };
  readonly http_filters: readonly { name: string }[];
  readonly route_config: {
    virtual_hosts: readonly { routes: readonly { route?: { cluster?: string } }[] }[];
  };
}

/** Every HTTP connection manager of the rendered bootstrap, with the listener it belongs to. */
function connectionManagers(vars: EnvoyVars): { listener: string; hcm: Hcm }[] {
  const doc = parse(renderEnvoyConfig(vars)) as {
    static_resources: {
      listeners: {
        name: string;
        filter_chains: { filters: { name: string; typed_config: Hcm }[] }[];
      }[];
    };
  };
  return doc.static_resources.listeners.flatMap((l) =>
    l.filter_chains.flatMap((c) =>
      c.filters
        .filter((f) => f.name === 'envoy.filters.network.http_connection_manager')
        .map((f) => ({ listener: l.name, hcm: f.typed_config })),
    ),
  );
}

describe('deploy/envoy: no listener routes to the upstream without the filters and the hardening', () => {
  const renderings: [string, EnvoyVars][] = [
    ['default (gRPC, plain)', ENVOY_DEFAULTS],
    ['gRPC with TLS', { ...ENVOY_DEFAULTS, TLS: true }],
    ['raw HTTP with TLS', { ...ENVOY_DEFAULTS, AUTHZ_GRPC: false, TLS: true }],
    ['docker-compose', COMPOSE_VARS],
  ];
  for (const [label, vars] of renderings) {
    it(`${label}: ext_authz, then ratelimit, then the router, on every listener`, () => {
      const hcms = connectionManagers(vars);
      assert.equal(hcms.length, vars.TLS ? 2 : 1);
      for (const { listener, hcm } of hcms) {
        const routesUpstream = hcm.route_config.virtual_hosts.some((v) =>
          v.routes.some((r) => r.route?.cluster === 'upstream'),
        );
        assert.ok(routesUpstream, listener);
        assert.deepEqual(
          hcm.http_filters.map((f) => f.name),
          ['envoy.filters.http.ext_authz', 'envoy.filters.http.ratelimit', 'envoy.filters.http.router'],
          listener,
        );
        assert.equal(hcm.use_remote_address, true, listener);
        assert.equal(hcm.normalize_path, true, listener);
        assert.equal(hcm.merge_slashes, true, listener);
        assert.equal(hcm.path_with_escaped_slashes_action, 'UNESCAPE_AND_REDIRECT', listener);
        assert.equal(
          hcm.common_http_protocol_options?.headers_with_underscores_action,
          'REJECT_REQUEST',
          listener,
        );
      }
      const prefixes = hcms.map((h) => h.hcm.stat_prefix);
      assert.equal(new Set(prefixes).size, prefixes.length, 'each listener keeps its own stats');
    });
  }
  it('includes expand a defined block with its local values, and unknown includes are refused', () => {
    const t = '# {{#define B}}\nx: {{V}}\n# {{/define}}\nlist:\n  # {{>B V=1}}\n  # {{>B V=2}}';
    assert.equal(renderEnvoyConfig(ENVOY_DEFAULTS, t), 'list:\n  x: 1\n  x: 2');
    assert.throws(() => renderEnvoyConfig(ENVOY_DEFAULTS, '# {{>NOPE}}'), /no #define for \{\{>NOPE\}\}/);
  });
});
