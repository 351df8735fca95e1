import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import {
  claimAt,
  claimText,
  hostMatcher,
  matchHost,
  matchPath,
  normalizeHost,
  parseTemplate,
  renderTemplate,
  sanitizeHeaderValue,
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
  it('parses host patterns trimmed and lower-cased; a wildcard needs a label before its suffix', () => {
    assert.deepEqual(hostMatcher('  API.Example.COM '), { kind: 'exact', host: 'api.example.com' });
    assert.deepEqual(hostMatcher(' *.Example.com'), { kind: 'suffix', suffix: '.example.com' });
    assert.deepEqual(hostMatcher(' * '), { kind: 'any' });
    assert.ok(!matchHost(hostMatcher('*.example.com'), '.example.com'), 'an empty label is no label');
    assert.ok(matchHost(hostMatcher('*.example.com'), 'a.example.com'));
    assert.equal(normalizeHost('  Example.COM  '), 'example.com');
    assert.equal(normalizeHost('[::1'), '[::1', 'an unclosed bracket is kept as it is');
    assert.equal(normalizeHost('[::1].'), '[::1]');
    assert.equal(normalizeHost('example.com'), 'example.com');
  });

  it('matches exact, prefix and regex paths', () => {
    assert.ok(matchPath({ kind: 'exact', path: '/a' }, '/a'));
    assert.ok(!matchPath({ kind: 'exact', path: '/a' }, '/a/'));
    assert.ok(matchPath({ kind: 'prefix', prefix: '/a' }, '/ab'));
    assert.ok(!matchPath({ kind: 'prefix', prefix: '/a' }, '/b/a'));
    assert.ok(matchPath({ kind: 'regex', regex: /^\/v[0-9]+\// }, '/v2/x'));
    assert.ok(!matchPath({ kind: 'regex', regex: /^\/v[0-9]+\// }, '/x/v2/'));
  });

  it('decodes exactly the unreserved characters (RFC 3986 2.3), every boundary of the set', () => {
    const decoded: Array<[string, string]> = [
      ['%2D', '-'],
      ['%2d', '-'],
      ['%2E', '.'],
      ['%2e', '.'],
      ['%30', '0'],
      ['%39', '9'],
      ['%41', 'A'],
      ['%4F', 'O'],
      ['%4f', 'O'],
      ['%4A', 'J'],
      ['%4a', 'J'],
      ['%50', 'P'],
      ['%59', 'Y'],
      ['%5A', 'Z'],
      ['%5a', 'Z'],
      ['%61', 'a'],
      ['%6F', 'o'],
      ['%6f', 'o'],
      ['%70', 'p'],
      ['%79', 'y'],
      ['%7A', 'z'],
      ['%7a', 'z'],
      ['%5F', '_'],
      ['%5f', '_'],
      ['%7E', '~'],
      ['%7e', '~'],
    ];
    for (const [enc, ch] of decoded) assert.equal(splitTarget(`/x${enc}y`).path, `/x${ch}y`, enc);
    // reserved and other characters stay encoded: separators, '@', '`', '[', '{', space, '%'
    for (const enc of [
      '%2F',
      '%3B',
      '%3A',
      '%40',
      '%60',
      '%5B',
      '%5E',
      '%7B',
      '%7F',
      '%20',
      '%25',
      '%2C',
      '%2B',
      '%3F',
      '%23',
    ])
      assert.equal(splitTarget(`/x${enc}y`).path, `/x${enc}y`, enc);
    assert.equal(splitTarget('/%2541dmin').path, '/%2541dmin', 'decoded once, never twice');
  });

  it('drops the fragment, splits the query at the first ?, keeps only the path of an absolute form', () => {
    assert.deepEqual(splitTarget('/a#frag?x'), { path: '/a', query: '', ambiguous: false });
    assert.deepEqual(splitTarget('/a?x=1?y#f'), { path: '/a', query: 'x=1?y', ambiguous: false });
    assert.deepEqual(splitTarget('https://h.example:8443/a/b?q'), {
      path: '/a/b',
      query: 'q',
      ambiguous: false,
    });
    assert.equal(splitTarget('svc+h2://h/x').path, '/x');
    assert.equal(splitTarget('/http://h/x').path, '/http:/h/x', 'only a leading scheme is an absolute form');
    assert.equal(splitTarget('').path, '/');
    assert.equal(splitTarget('/a/..').path, '/');
    assert.equal(splitTarget('/a/b/..').path, '/a/');
    assert.equal(splitTarget('/a/b/.').path, '/a/b/');
    assert.equal(splitTarget('/a/b').path, '/a/b');
    assert.equal(splitTarget('/a/.hidden/b').path, '/a/.hidden/b');
    assert.equal(splitTarget('/a/...').path, '/a/...');
    assert.equal(splitTarget('/a;p').ambiguous, false);
    assert.equal(splitTarget('/a/.;').ambiguous, true);
  });

  it('reads claims only through plain objects', () => {
    const c = { a: { b: null, arr: [{ x: 1 }], n: 0 }, 'a.b': 'whole' };
    assert.equal(claimAt(c, 'a.b'), 'whole', 'a dotted key is tried whole first');
    assert.equal(claimAt({ a: { b: null } }, 'a.b'), null);
    assert.equal(claimAt({ a: { b: null } }, 'a.b.c'), undefined);
    assert.equal(claimAt(c, 'a.arr.0'), undefined, 'no indexing into arrays');
    assert.equal(claimAt(c, 'a.n'), 0);
    assert.equal(claimAt({ a: 'text' }, 'a.length'), undefined);
    assert.equal(claimAt({ a: {} }, 'a.constructor'), undefined);
  });

  it('renders claim values as header text', () => {
    assert.equal(claimText(undefined), undefined);
    assert.equal(claimText(null), undefined);
    assert.equal(claimText(''), '');
    assert.equal(claimText(0), '0');
    assert.equal(claimText(false), 'false');
    assert.equal(claimText(true), 'true');
    assert.equal(claimText(['a', 1, { b: 2 }]), 'a,1,{"b":2}');
    assert.equal(claimText([]), '');
    assert.equal(claimText({ k: 'v' }), '{"k":"v"}');
  });

  it('parses templates: literals, references, and the errors', () => {
    assert.deepEqual(parseTemplate('plain'), { parts: [{ literal: 'plain' }] });
    assert.deepEqual(parseTemplate(''), { parts: [] });
    assert.deepEqual(parseTemplate('a{{ x.y }}b{{z}}'), {
      parts: [{ literal: 'a' }, { claim: 'x.y' }, { literal: 'b' }, { claim: 'z' }],
    });
    assert.deepEqual(parseTemplate('{{https://x.io/t_1-a:b}}'), {
      parts: [{ claim: 'https://x.io/t_1-a:b' }],
    });
    assert.equal(parseTemplate('a {{ sub'), 'unclosed {{');
    assert.equal(parseTemplate('{{ a b }}'), "bad claim reference 'a b'");
    assert.equal(parseTemplate('{{}}'), "bad claim reference ''");
    assert.equal(parseTemplate('{{ x$ }}'), "bad claim reference 'x$'");
    assert.deepEqual(parseTemplate('}}{{a}}'), { parts: [{ literal: '}}' }, { claim: 'a' }] });
  });

  it('removes control characters from header values, keeps tab and text', () => {
    assert.equal(sanitizeHeaderValue('a\x00b\x08c\td\ne\x1ff\x7fg h~'), 'abc\tdefg h~');
    assert.equal(renderTemplate(parseTemplate('{{a}}-{{b}}') as Template, { a: 1, b: true }), '1-true');
  });
});
