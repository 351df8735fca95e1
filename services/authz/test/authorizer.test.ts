import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { Authorizer } from '../src/authorizer.ts';
import { parsePolicy } from '../src/policy.ts';
import { FakeFetcher, makeKey, sign, silent } from './helpers.ts';

describe('Authorizer', () => {
  it('reuses unchanged key stores on a policy swap (no refetch) and applies the new rules', async () => {
    const key = await makeKey('ES256', 'k1');
    const f = new FakeFetcher();
    f.routes.set('https://i.test/jwks', () => ({ json: { keys: [key.jwk] }, maxAgeSec: 300 }));
    const doc = (path: string) =>
      parsePolicy(
        `providers: { p: { issuer: "https://i.test", jwksUri: "https://i.test/jwks" } }\nrules: [ { match: { pathPrefix: ${path} }, jwt: true } ]`,
        'a.yaml',
      );
    const a = new Authorizer(doc('/a'), {
      fetch: f.fetch,
      now: Date.now,
      logger: silent,
      tokenCacheSize: 10,
      tokenCacheTtlMs: 60_000,
    });
    await a.warm();
    const t = await sign(key, { iss: 'https://i.test' });
    const req = (path: string) => ({
      method: 'GET',
      host: 'h',
      path,
      headers: { authorization: `Bearer ${t}` },
      contextExtensions: {},
    });
    assert.equal((await a.decide(req('/a'))).kind, 'allow');
    a.replace(doc('/b'));
    assert.equal((await a.decide(req('/a'))).kind, 'deny');
    assert.equal((await a.decide(req('/b'))).kind, 'allow');
    assert.equal(f.count('https://i.test/jwks'), 1);
    a.close();
  });
});
