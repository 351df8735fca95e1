import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createRuntime, type Runtime } from '@extsvc/common/runtime';
import { loadConfig } from '../src/config.ts';
import { start, type AuthzService } from '../src/server.ts';

const until = async (what: string, probe: () => Promise<boolean>, ms = 5000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
};

describe('server: policy and secret hot reload', () => {
  const dir = mkdtempSync(join(tmpdir(), 'authz-server-'));
  const keyFile = join(dir, 'api.key');
  const policyFile = join(dir, 'policy.yaml');
  const policy = `apiKeys:\n  s: { keys: [ { name: ci, file: api.key } ] }\nrules:\n  - { name: keyed, apiKey: s }\n`;
  let svc: AuthzService;
  let rt: Runtime;

  before(async () => {
    writeFileSync(keyFile, 'first-key\n');
    writeFileSync(policyFile, policy);
    const parsed = loadConfig(
      [
        '--grpc-host=127.0.0.1',
        '--grpc-port=0',
        '--http-host=127.0.0.1',
        '--http-port=0',
        '--admin-host=127.0.0.1',
        '--admin-port=0',
        `--policy-file=${policyFile}`,
        '--policy-poll-ms=50',
        '--drain-ms=0',
      ],
      {},
    );
    assert.equal(parsed.kind, 'options');
    if (parsed.kind !== 'options') return;
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    rt = createRuntime({ service: 'authz', version: 'test', logLevel: 'silent', destination: sink });
    svc = await start(parsed.options, rt);
  });
  after(async () => {
    await svc.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const check = async (key: string): Promise<number> =>
    (await fetch(`http://127.0.0.1:${svc.httpPort}/any`, { headers: { 'x-api-key': key } })).status;

  it('picks up a rotated key file and keeps the last good policy on a bad edit', async () => {
    assert.equal(await check('first-key'), 200);
    writeFileSync(keyFile, 'second-key\n');
    await until('rotated key', async () => (await check('second-key')) === 200);
    assert.equal(await check('first-key'), 401);
    writeFileSync(policyFile, 'rules: [ { jwt: { providers: [nope] } } ]\n');
    const metrics = async () => (await fetch(`http://127.0.0.1:${svc.adminPort}/metrics`)).text();
    await until('failed reload', async () => /authz_policy_reload_ok\{[^}]*\} 0/.test(await metrics()));
    assert.equal(await check('second-key'), 200, 'last good policy still active');
    const config = (await (await fetch(`http://127.0.0.1:${svc.adminPort}/config`)).text()).toLowerCase();
    assert.ok(!config.includes('second-key'), '/config never shows secrets');
  });
});

describe('server: admin redaction and the test-form budget', () => {
  const dir = mkdtempSync(join(tmpdir(), 'authz-admin-'));
  const policyFile = join(dir, 'policy.yaml');
  let svc: AuthzService;
  let now = 1_700_000_000_000;

  before(async () => {
    writeFileSync(
      policyFile,
      [
        'providers:',
        '  corp:',
        '    issuer: https://idp.example',
        '    jwksUri: https://svc:S3cretPass@idp.example/jwks?client_secret=TopSecretValue1',
        '  disco:',
        '    issuer: https://other.example',
        '    discoveryUrl: https://other.example/.well-known/openid-configuration?api_key=QueryKey2#frag',
        'apiKeys: { s: { keys: [ { name: ci, value: the-api-key } ] } }',
        'rules: [ { name: keyed, apiKey: s } ]',
      ].join('\n'),
    );
    const parsed = loadConfig(
      [
        '--grpc-host=127.0.0.1',
        '--grpc-port=0',
        '--http-host=127.0.0.1',
        '--http-port=0',
        '--admin-host=127.0.0.1',
        '--admin-port=0',
        `--policy-file=${policyFile}`,
        '--policy-poll-ms=0',
        '--drain-ms=0',
        '--diag-test-per-minute=3',
      ],
      {},
    );
    assert.ok(parsed.kind === 'options');
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    const rt = createRuntime({ service: 'authz', version: 'test', logLevel: 'silent', destination: sink });
    svc = await start(parsed.options, rt, {
      now: () => now,
      fetch: () => Promise.reject(new Error('offline')),
    });
  });
  after(async () => {
    await svc.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const admin = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${svc.adminPort}${path}`, init);

  it('/config redacts key URLs like /diag: no userinfo, no query secrets', async () => {
    for (const path of ['/config', '/diag.json']) {
      const text = await (await admin(path)).text();
      assert.match(text, /idp\.example\/jwks/, path);
      for (const secret of [
        'S3cretPass',
        'TopSecretValue1',
        'client_secret',
        'QueryKey2',
        'svc:',
        'the-api-key',
      ])
        assert.ok(!text.includes(secret), `${path} shows ${secret}`);
    }
  });

  it('counts test-form runs and answers 429 beyond the budget, until it refills', async () => {
    const post = (key: string) =>
      admin('/diag/authz/test', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ path: '/x', headers: `x-api-key: ${key}` }),
      });
    assert.equal((await post('the-api-key')).status, 200);
    assert.equal((await post('guess-1')).status, 200);
    assert.equal((await post('guess-2')).status, 200);
    const limited = await post('guess-3');
    assert.equal(limited.status, 429);
    assert.equal(limited.headers.get('retry-after'), '20');
    assert.match(((await limited.json()) as { error: string }).error, /at most 3 per minute/);
    const metrics = await (await admin('/metrics')).text();
    assert.match(metrics, /authz_diag_test_total\{[^}]*result="allow"[^}]*\} 1/);
    assert.match(metrics, /authz_diag_test_total\{[^}]*result="deny"[^}]*\} 2/);
    assert.match(metrics, /authz_diag_test_total\{[^}]*result="limited"[^}]*\} 1/);
    now += 20_000;
    assert.equal((await post('guess-4')).status, 200);
    assert.equal((await post('guess-5')).status, 429);
  });
});
