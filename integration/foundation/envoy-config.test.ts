import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  COMPOSE_VARS,
  ENVOY_DEFAULTS,
  renderEnvoyConfig,
  type EnvoyVars,
} from '../../deploy/envoy/render.ts';
import { envoyBin, ROOT } from '../harness/stack.ts';

/** Writes a self-signed certificate and an SDS file as acme lays them out, so the TLS listener validates. */
function fakeCertDir(secret: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'extsvc-envoy-validate-'));
  const d = join(dir, secret);
  mkdirSync(d, { recursive: true });
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      join(d, 'tls.key'),
      '-out',
      join(d, 'tls.crt'),
      '-days',
      '1',
      '-subj',
      '/CN=example.test',
    ],
    { stdio: 'pipe' },
  );
  writeFileSync(
    join(d, 'sds.yaml'),
    `resources:\n  - "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n    name: ${secret}\n    tls_certificate:\n      certificate_chain: { filename: ${join(d, 'tls.crt')} }\n      private_key: { filename: ${join(d, 'tls.key')} }\n`,
  );
  return dir;
}

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
    const certDir = fakeCertDir(COMPOSE_VARS.TLS_SECRET);
    try {
      const r = validate({ ...COMPOSE_VARS, CERT_DIR: certDir });
      assert.equal(r.status, 0, r.output);
    } finally {
      rmSync(certDir, { recursive: true, force: true });
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
