import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { createPublicKey, randomBytes } from 'node:crypto';
import { generateKeyPair, exportJWK, SignJWT } from 'jose';
import { Stack, type EnvoyHandle, type ServiceHandle } from '../harness/stack.ts';
import { AuthzClient, type CheckOutcome } from './client.ts';
import { Issuer } from './issuer.ts';
import { writePolicy } from './policy.ts';

const enc = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');

function deniedWith(o: CheckOutcome, status: number, code?: string): void {
  assert.ok(o.ok, `RPC failed with code ${o.ok ? '' : o.code}`);
  assert.notEqual(o.res.status?.code, 0, 'must be denied');
  assert.equal(o.res.denied_response?.status?.code, status === 401 ? 'Unauthorized' : 'Forbidden');
  if (code) assert.equal((JSON.parse(o.res.denied_response?.body ?? '{}') as { code: string }).code, code);
}

describe('authz security suite', function () {
  const stack = new Stack('authz-security').install();
  const issuer = new Issuer();
  let authz: ServiceHandle;
  let envoy: EnvoyHandle;
  let client: AuthzClient;
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

  before(async function () {
    this.timeout(60_000);
    await issuer.start();
    authz = await stack.service('authz', {
      args: ['--policy-file', writePolicy(stack.dir, issuer.issuer)],
      env: { LOG_LEVEL: 'warn' },
    });
    const echo = await stack.echo();
    envoy = await stack.envoy({ AUTHZ_GRPC_PORT: authz.ports.grpc ?? 0, UPSTREAM_PORT: echo.port });
    client = new AuthzClient(authz.ports.grpc ?? 0);
    // Warm: one valid token so the keys are loaded.
    const ok = await client.checkHttp(bearer(await issuer.token()));
    assert.ok(ok.ok && ok.res.status?.code === 0);
  });
  after(async () => {
    client.close();
    await issuer.stop();
  });

  it('rejects alg none (with and without a signature)', async () => {
    const p = enc({ iss: issuer.issuer, aud: 'api', sub: 'x', exp: Math.floor(Date.now() / 1000) + 60 });
    deniedWith(await client.checkHttp(bearer(`${enc({ alg: 'none' })}.${p}.`)), 401, 'malformed_token');
    deniedWith(
      await client.checkHttp(bearer(`${enc({ alg: 'none', kid: issuer.kid })}.${p}.AAAA`)),
      401,
      'alg_not_allowed',
    );
    deniedWith(await client.checkHttp(bearer(`${enc({ alg: 'NONE' })}.${p}.AAAA`)), 401, 'alg_not_allowed');
  });

  it('rejects HS256 signed with the issuer public key (key confusion)', async () => {
    const { publicKey } = await generateKeyPair('RS256', { extractable: true });
    const pem = createPublicKey({ key: await exportJWK(publicKey), format: 'jwk' }).export({
      type: 'spki',
      format: 'pem',
    }) as string;
    const forged = await new SignJWT({
      iss: issuer.issuer,
      aud: 'api',
      sub: 'x',
      exp: Math.floor(Date.now() / 1000) + 60,
    })
      .setProtectedHeader({ alg: 'HS256', kid: issuer.kid })
      .sign(new TextEncoder().encode(pem));
    deniedWith(await client.checkHttp(bearer(forged)), 401, 'alg_not_allowed');
  });

  it('bounds the JWKS requests of an unknown-kid flood', async () => {
    const before = issuer.count('/jwks');
    const tokens = await Promise.all(
      Array.from({ length: 300 }, (_, i) => issuer.token({}, { kid: `bogus-${i}` })),
    );
    const results = await Promise.all(tokens.map((t) => client.checkHttp(bearer(t))));
    for (const r of results) deniedWith(r, 401, 'unknown_kid');
    // cooldown 2 s: at most one refetch, plus possibly one background refresh (maxAge 2 s).
    assert.ok(issuer.count('/jwks') - before <= 2, `jwks requests: ${issuer.count('/jwks') - before}`);
  });

  it('rejects expired, not-yet-valid, wrong iss and wrong aud tokens', async () => {
    const now = Math.floor(Date.now() / 1000);
    deniedWith(await client.checkHttp(bearer(await issuer.token({ exp: now - 3600 }))), 401, 'token_expired');
    deniedWith(
      await client.checkHttp(bearer(await issuer.token({ nbf: now + 3600 }))),
      401,
      'token_not_yet_valid',
    );
    deniedWith(await client.checkHttp(bearer(await issuer.token({ aud: 'other' }))), 401, 'wrong_audience');
    deniedWith(
      await client.checkHttp(bearer(await issuer.token({ iss: 'https://evil.example' }))),
      401,
      'unknown_issuer',
    );
  });

  it('rejects oversized, malformed and crit tokens', async () => {
    deniedWith(
      await client.checkHttp(bearer(await issuer.token({ pad: 'x'.repeat(20_000) }))),
      401,
      'token_too_large',
    );
    for (const bad of [
      'a',
      'a.b',
      'a.b.c.d',
      '...',
      'eyJ.eyJ.sig',
      `${enc('str')}.${enc({})}.x`,
      `${enc({ alg: 'ES256' })}.%%%.x`,
    ])
      deniedWith(await client.checkHttp(bearer(bad)), 401);
    const input = `${enc({ alg: 'ES256', kid: issuer.kid, crit: ['x-c'], 'x-c': 1 })}.${enc({ iss: issuer.issuer, aud: 'api', exp: Math.floor(Date.now() / 1000) + 60 })}`;
    deniedWith(await client.checkHttp(bearer(`${input}.${randomBytes(64).toString('base64url')}`)), 401);
  });

  it('strips spoofed identity headers through Envoy when the claim is absent', async () => {
    const res = await fetch(envoy.url('/api/x'), {
      headers: { ...bearer(await issuer.token()), 'x-user-roles': 'admin', 'x-user-tenant': 'evil' },
    });
    assert.equal(res.status, 200);
    const echo = (await res.json()) as { headers: Record<string, string> };
    assert.equal(echo.headers['x-user-roles'], undefined);
    assert.equal(echo.headers['x-user-tenant'], undefined);
    assert.equal(echo.headers['x-user-id'], 'alice');
    const pub = await fetch(envoy.url('/public/x'), { headers: { 'x-user-id': 'root' } });
    assert.equal(((await pub.json()) as { headers: Record<string, string> }).headers['x-user-id'], undefined);
  });

  it('makes no fetch for an unconfigured issuer', async () => {
    // Only fetches that name an unconfigured issuer count: the configured issuer's own key refreshes
    // may happen while the loop runs on a slow machine.
    const strayFetches = (): number =>
      [...issuer.counts.entries()]
        .filter(([path]) => path.includes('/other-'))
        .reduce((a, [, n]) => a + n, 0);
    const { privateKey } = await generateKeyPair('ES256');
    for (let i = 0; i < 50; i++) {
      const t = await new SignJWT({
        iss: `${issuer.url}/other-${i}`,
        aud: 'api',
        exp: Math.floor(Date.now() / 1000) + 60,
      })
        .setProtectedHeader({ alg: 'ES256', kid: 'x' })
        .sign(privateKey);
      deniedWith(await client.checkHttp(bearer(t)), 401, 'unknown_issuer');
    }
    assert.equal(strayFetches(), 0);
    assert.ok((await authz.metric('authz_check_total')) >= 50, 'the 50 checks were decided');
  });

  it('bounds a huge and a slow JWKS endpoint (keys never obtained: a deny, fast, process alive)', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    for (const iss of ['https://huge.example', 'https://slow.example']) {
      const t = await new SignJWT({ iss, aud: 'api', exp: Math.floor(Date.now() / 1000) + 60 })
        .setProtectedHeader({ alg: 'ES256', kid: 'x' })
        .sign(privateKey);
      // /slow answers after 10 s, past the client's 5 s deadline: an answer at all means the provider's
      // 300 ms keyCache.timeout cut the fetch (no wall-clock bound on a loaded machine).
      const r = await client.checkHttp(bearer(t));
      // A client chooses this path by naming the issuer: a deny, never Envoy's failure mode.
      deniedWith(r, 401, 'keys_unavailable');
    }
    for (const issuer of ['https://huge.example', 'https://slow.example'])
      assert.ok((await authz.metric('authz_jwks_fetch_total', { issuer, result: 'error' })) >= 1, issuer);
    assert.equal((await authz.admin('/healthz')).status, 200);
  });

  it('denies 10,000 random and mutated tokens with zero RPC errors and zero 5xx', async function () {
    this.timeout(90_000);
    const valid = await issuer.token();
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ';
    let seed = 42;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const mutate = (): string => {
      switch (rnd(8)) {
        case 0: {
          // flip one character (never the last one: its low bits may be unused base64url padding)
          const i = rnd(valid.length - 1);
          let c = alphabet[rnd(64)] as string;
          if (c === valid[i]) c = c === 'A' ? 'B' : 'A';
          return valid.slice(0, i) + c + valid.slice(i + 1);
        }
        case 1:
          return valid.slice(0, rnd(valid.length - 1));
        case 2: {
          const [h, p, s] = valid.split('.');
          return [p, h, s].join('.');
        }
        case 3:
          return Array.from({ length: 1 + rnd(300) }, () => alphabet[rnd(alphabet.length)]).join('');
        case 4:
          return `${enc({ alg: ['none', 'HS256', 'RS256', 'ES512', 'EdDSA', 7][rnd(6)], kid: 'x'.repeat(rnd(400)) })}.${valid.split('.')[1]}.${valid.split('.')[2]}`;
        case 5:
          return `${valid.split('.')[0]}.${enc({ iss: issuer.issuer, aud: 'api', exp: 1e12, sub: 'root' })}.${valid.split('.')[2]}`;
        case 6:
          return (
            randomBytes(rnd(200) + 1).toString('base64url') +
            '.' +
            randomBytes(rnd(200) + 1).toString('base64url') +
            '.' +
            randomBytes(64).toString('base64url')
          );
        default:
          return `${enc({ alg: 'ES256', kid: issuer.kid, crit: rnd(2) ? ['b64'] : [], b64: false })}.${valid.split('.')[1]}.${valid.split('.')[2]}`;
      }
    };
    let rpcErrors = 0;
    let allowed = 0;
    const N = 10_000;
    const CONC = 64;
    let next = 0;
    await Promise.all(
      Array.from({ length: CONC }, async () => {
        while (next < N) {
          next++;
          const t = mutate();
          if (t === valid) continue;
          const r = await client.checkHttp(bearer(t));
          if (!r.ok) rpcErrors++;
          else if (r.res.status?.code === 0) allowed++;
        }
      }),
    );
    assert.equal(rpcErrors, 0);
    assert.equal(allowed, 0);
    // A sample through Envoy: never a 5xx.
    const statuses = new Map<number, number>();
    for (let i = 0; i < 300; i++) {
      const res = await fetch(envoy.url('/api/x'), {
        headers: bearer(mutate().replace(/[^\x21-\x7e]/g, 'A')),
      });
      await res.arrayBuffer();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    }
    assert.deepEqual(
      [...statuses.keys()].filter((s) => s >= 500 || s === 200),
      [],
      JSON.stringify([...statuses]),
    );
    assert.equal((await authz.admin('/healthz')).status, 200);
    assert.equal(stack.unexpectedExits().length, 0);
  });
});
