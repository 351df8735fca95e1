import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import {
  claimAt,
  hostMatcher,
  matchHost,
  normalizeHost,
  parseTemplate,
  renderTemplate,
  splitTarget,
  type Template,
} from '../src/match.ts';

describe('match', () => {
  it('normalizes hosts: lower case, no port, no trailing dot', () => {
    assert.equal(normalizeHost('API.Example.com:8443'), 'api.example.com');
    assert.equal(normalizeHost('example.com.'), 'example.com');
    assert.equal(normalizeHost('[::1]:80'), '[::1]');
  });

  it('matches exact, wildcard and any hosts', () => {
    assert.ok(matchHost(hostMatcher('api.example.com'), 'api.example.com'));
    assert.ok(!matchHost(hostMatcher('api.example.com'), 'x.api.example.com'));
    assert.ok(matchHost(hostMatcher('*.example.com'), 'a.b.example.com'));
    assert.ok(!matchHost(hostMatcher('*.example.com'), 'example.com'));
    assert.ok(!matchHost(hostMatcher('*.example.com'), 'badexample.com'));
    assert.ok(matchHost(hostMatcher('*'), 'anything'));
  });

  it('normalizes paths so traversal and encoding cannot dodge a rule', () => {
    assert.deepEqual(splitTarget('/public/../admin?x=1'), { path: '/admin', query: 'x=1', ambiguous: false });
    assert.equal(splitTarget('//admin').path, '/admin');
    assert.equal(splitTarget('/%61dmin').path, '/admin');
    assert.equal(splitTarget('/a%2Fb').path, '/a%2Fb');
    assert.equal(splitTarget('/./a/./b/').path, '/a/b/');
    assert.equal(splitTarget('/../../etc').path, '/etc');
    assert.equal(splitTarget('http://h/x?y').path, '/x');
    assert.equal(splitTarget('/a\\..\\admin').path, '/admin');
  });

  it('removes path parameters per segment and flags dot segments that carry one', () => {
    assert.deepEqual(splitTarget('/admin;jsessionid=1'), { path: '/admin', query: '', ambiguous: false });
    assert.equal(splitTarget('/a;x=1/b;y/c').path, '/a/b/c');
    assert.equal(splitTarget('/;x/admin').path, '/admin');
    assert.equal(splitTarget('/a/%3B/b').path, '/a/%3B/b', 'an encoded ; is data, not a separator');
    for (const t of [
      '/public/%2e%2e;/api/x',
      '/public/..;/api/x',
      '/public/%2e;/admin',
      '/x/.;a=b/y',
      '/a/..;',
    ])
      assert.equal(splitTarget(t).ambiguous, true, t);
    assert.equal(splitTarget('/public/%2e%2e;/api/x').path, '/api/x');
    assert.equal(splitTarget('/a/..x;/b').ambiguous, false);
  });

  it('decodes %2E and %2e like "." before resolving dot segments', () => {
    assert.equal(splitTarget('/public/%2E%2E/admin').path, '/admin');
    assert.equal(splitTarget('/public/%2e%2E/admin').path, '/admin');
    assert.equal(splitTarget('/%2E/admin/%2E').path, '/admin/');
  });

  it('reads nested claims and dotted keys', () => {
    const c = { realm_access: { roles: ['a', 'b'] }, 'https://x.io/tenant': 't1' };
    assert.deepEqual(claimAt(c, 'realm_access.roles'), ['a', 'b']);
    assert.equal(claimAt(c, 'https://x.io/tenant'), 't1');
    assert.equal(claimAt(c, 'realm_access.missing'), undefined);
    assert.equal(claimAt(c, 'toString'), undefined);
  });

  it('renders templates; an absent claim means no header; control characters are removed', () => {
    const t = parseTemplate('u-{{ sub }}') as Template;
    assert.equal(renderTemplate(t, { sub: 'alice' }), 'u-alice');
    assert.equal(renderTemplate(t, {}), undefined);
    assert.equal(renderTemplate(parseTemplate('{{roles}}') as Template, { roles: ['a', 'b'] }), 'a,b');
    assert.equal(renderTemplate(t, { sub: 'a\r\nx-evil: 1' }), 'u-ax-evil: 1');
    assert.equal(typeof parseTemplate('{{ sub'), 'string');
  });
});
