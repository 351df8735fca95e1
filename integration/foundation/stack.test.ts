import { describe, it, before } from 'mocha';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Stack, ROOT, type ServiceHandle, type EnvoyHandle } from '../harness/stack.ts';
import { waitUntil } from '../harness/proc.ts';

const fixtures = join(import.meta.dirname, 'fixtures');

describe('foundation: a real Envoy in front of the three services', function () {
  const stack = new Stack('foundation').install();
  let authz: ServiceHandle;
  let ratelimit: ServiceHandle;
  let acme: ServiceHandle;
  let envoy: EnvoyHandle;
  let upstream: { port: number; readonly requests: number };

  before(async function () {
    this.timeout(60_000);
    [authz, ratelimit, acme, upstream] = await Promise.all([
      stack.service('authz', {
        args: ['--policy-file', join(import.meta.dirname, 'fixtures', 'allow-all.yaml')],
      }),
      stack.service('ratelimit', { args: [`--config-dir=${join(fixtures, 'ratelimit')}`] }),
      stack.service('acme', {
        args: [`--hosts-file=${join(fixtures, 'hosts.yaml')}`, `--cert-dir=${stack.mkdir('certs')}`],
      }),
      stack.echo(),
    ]);
    envoy = await stack.envoy({
      AUTHZ_GRPC_PORT: authz.ports.grpc as number,
      AUTHZ_HTTP_PORT: authz.ports.http as number,
      RATELIMIT_GRPC_PORT: ratelimit.ports.grpc as number,
      ACME_CHALLENGE_PORT: acme.ports.challenge as number,
      UPSTREAM_PORT: upstream.port,
    });
  });

  it('sends each request through authz Check and ratelimit ShouldRateLimit', async () => {
    const checksBefore = await authz.metric('authz_check_total', { transport: 'grpc' });
    const rlBefore = await ratelimit.metric('ratelimit_should_rate_limit_total');
    for (let i = 0; i < 3; i++) {
      const res = await fetch(envoy.url(`/hello/${i}`), { headers: { 'x-client-id': 'c1' } });
      assert.equal(res.status, 200);
      const echoed = (await res.json()) as { path: string };
      assert.equal(echoed.path, `/hello/${i}`);
    }
    assert.equal((await authz.metric('authz_check_total', { transport: 'grpc' })) - checksBefore, 3);
    assert.equal((await ratelimit.metric('ratelimit_should_rate_limit_total')) - rlBefore, 3);
  });

  it('routes /.well-known/acme-challenge/ to acme without an authz call or a rate limit call', async () => {
    const checksBefore = await authz.metric('authz_check_total');
    const rlBefore = await ratelimit.metric('ratelimit_should_rate_limit_total');
    const hitsBefore = await acme.metric('acme_challenge_requests_total');
    const res = await fetch(envoy.url('/.well-known/acme-challenge/x'));
    assert.equal(res.status, 404);
    assert.equal((await acme.metric('acme_challenge_requests_total')) - hitsBefore, 1);
    assert.equal(await authz.metric('authz_check_total'), checksBefore);
    assert.equal(await ratelimit.metric('ratelimit_should_rate_limit_total'), rlBefore);
  });

  it('serves gRPC health and admin endpoints on every service', async () => {
    for (const svc of [authz, ratelimit, acme]) {
      assert.equal((await svc.admin('/healthz')).status, 200, svc.name);
      assert.equal((await svc.admin('/readyz')).status, 200, svc.name);
      const config = await svc.admin('/config');
      assert.equal(config.status, 200, svc.name);
      assert.ok(JSON.parse(config.body), svc.name);
      assert.match(await svc.metrics(), /process_resident_memory_bytes/, svc.name);
    }
  });
});

describe('foundation: the harness notices failures and cleans up', function () {
  it('reports a service killed mid-test with its log, and leaves no process behind', async function () {
    this.timeout(60_000);
    const inner = new Stack('harness-self-test');
    try {
      const svc = await inner.service('ratelimit', { args: [`--config-dir=${join(fixtures, 'ratelimit')}`] });
      const pid = svc.proc.child.pid as number;
      svc.proc.signal('SIGKILL');
      await waitUntil('ratelimit to die', () => svc.proc.exitStatus !== undefined);
      const dead = inner.unexpectedExits();
      assert.equal(dead.length, 1);
      assert.match(
        dead[0]?.unexpectedExit ?? '',
        /ratelimit exited unexpectedly \(code null, signal SIGKILL\)/,
      );
      assert.match(dead[0]?.logs() ?? '', /ratelimit started/);
      assert.throws(() => process.kill(pid, 0), /ESRCH/);
      const other = await inner.service('acme', {
        args: [`--hosts-file=${join(fixtures, 'hosts.yaml')}`, `--cert-dir=${inner.mkdir('certs')}`],
      });
      const otherPid = other.proc.child.pid as number;
      await inner.stop();
      assert.throws(() => process.kill(otherPid, 0), /ESRCH/);
    } finally {
      await inner.stop();
    }
  });

  const UNREADABLE = {
    authz: ['--policy-file=/nonexistent/policy.yaml'],
    ratelimit: ['--config-dir=/nonexistent/config'],
    acme: ['--hosts-file=/nonexistent/hosts.yaml', '--cert-dir=/tmp'],
  } as const;
  for (const name of ['authz', 'ratelimit', 'acme'] as const) {
    it(`${name}: bad configuration exits 2 with one line naming the problem`, () => {
      const main = join(ROOT, 'services', name, 'src', 'main.ts');
      const run = (...args: string[]) =>
        spawnSync(process.execPath, [main, ...args], {
          encoding: 'utf8',
          timeout: 20_000,
          env: { ...process.env, LOG_LEVEL: 'silent' },
        });
      const unknown = run('--no-such-flag=1');
      assert.equal(unknown.status, 2, unknown.stderr);
      assert.equal(unknown.stderr.trim().split('\n').length, 1);
      assert.match(unknown.stderr, /--no-such-flag: unknown flag/);
      const badPort = run('--admin-port=70000');
      assert.equal(badPort.status, 2);
      assert.match(badPort.stderr, /--admin-port: must be a port number 0-65535, got '70000'/);
      const badEnv = spawnSync(process.execPath, [main], {
        encoding: 'utf8',
        timeout: 20_000,
        env: { ...process.env, ADMIN_PORT: 'x' },
      });
      assert.equal(badEnv.status, 2);
      assert.match(badEnv.stderr, /ADMIN_PORT: must be a port number/);
      const unreadable = run(...UNREADABLE[name]);
      assert.equal(unreadable.status, 2, unreadable.stderr);
      assert.match(
        unreadable.stderr,
        /\/nonexistent\/\S+'? \(ENOENT\)|\/nonexistent\/\S+.*(not found|ENOENT|cannot read)/,
      );
      assert.equal(unreadable.stderr.trim().split('\n').length, 1);
      const help = run('--help');
      assert.equal(help.status, 0);
      assert.match(help.stdout, /--admin-port=<port>/);
    });
  }
});
