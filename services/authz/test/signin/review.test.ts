import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { decide, type AuthRequest, type Decision, type DecisionDeps } from '../../src/decision.ts';
import { parsePolicy } from '../../src/policy.ts';
import { TokenCache } from '../../src/verifier.ts';

const env = { SECRET: 'the-client-secret', KEYS: randomBytes(32).toString('base64') };
const deps: DecisionDeps = { keyStores: new Map(), cache: new TokenCache(10, 1000), now: () => Date.now() };
const req = (path: string, headers: Record<string, string>): AuthRequest => ({
  method: 'GET',
  host: 'app.example',
  path,
  headers,
  contextExtensions: {},
});

/** The Cookie header the upstream gets: rewritten, removed, or the client's as sent. */
function upstreamCookie(d: Decision, sent: string): string | undefined {
  assert.equal(d.kind, 'allow', JSON.stringify(d));
  if (d.kind !== 'allow') return undefined;
  const set = d.headers.find(([k]) => k === 'cookie');
  if (set) return set[1];
  return d.removeHeaders.includes('cookie') ? undefined : sent;
}

describe('signin review: the sign-in cookies never reach an upstream (M2)', () => {
  const policy = (removeCredentials: boolean) =>
    parsePolicy(
      `providers: { idp: { issuer: https://idp.example } }
login: { provider: idp, clientId: web, clientSecret: { env: SECRET }, sessionKeys: { env: KEYS } }
apiKeys: { partners: { keys: [ { name: p1, value: the-key } ] } }
identity: { removeCredentials: ${removeCredentials} }
rules:
  - { name: open, match: { pathPrefix: /public }, public: true, login: false }
  - { name: keys, match: { pathPrefix: /partner }, apiKey: partners, login: false }
  - { name: app, match: { pathPrefix: / }, jwt: { providers: [idp] } }
`,
      'p.yaml',
      env,
    );
  const sent = 'pref=dark; authz_session=SEALED; authz_session_state=STATE; lang=en';

  for (const rc of [true, false])
    it(`strips authz_session and authz_session_state on public and API-key rules, keeps the others (removeCredentials: ${rc})`, async () => {
      const p = policy(rc);
      const pub = await decide(p, req('/public/x', { cookie: sent }), deps);
      assert.equal(upstreamCookie(pub, sent), 'pref=dark; lang=en');
      const key = await decide(p, req('/partner/x', { cookie: sent, 'x-api-key': 'the-key' }), deps);
      assert.equal(upstreamCookie(key, sent), 'pref=dark; lang=en');
    });

  it('removes the Cookie header when only sign-in cookies were in it, and leaves it alone without them', async () => {
    const p = policy(false);
    const only = 'authz_session=SEALED';
    assert.equal(upstreamCookie(await decide(p, req('/public/x', { cookie: only }), deps), only), undefined);
    const other = 'pref=dark; authz_session_x=1';
    const d = await decide(p, req('/public/x', { cookie: other }), deps);
    assert.equal(upstreamCookie(d, other), other);
    assert.ok(d.kind === 'allow' && !d.removeHeaders.includes('cookie') && d.headers.length === 0);
  });
});
