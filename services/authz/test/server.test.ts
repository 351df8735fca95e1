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
