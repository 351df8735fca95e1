import { beforeEach, describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildRuleSet,
  matchDescriptor,
  wildcardMatch,
  compileWildcard,
  type Entry,
  type Match,
  type RuleSet,
} from '../src/rules.ts';
import { RulesError } from '../src/errors.ts';
import { FIXTURES, goodRules } from './helpers.ts';

const e = (...kv: string[]): Entry[] => {
  const out: Entry[] = [];
  for (let i = 0; i < kv.length; i += 2) out.push({ key: kv[i] as string, value: kv[i + 1] as string });
  return out;
};
const m = (r: ReturnType<typeof matchDescriptor>): Match | undefined =>
  r === 'domain_not_found' ? undefined : r;

describe('ratelimit/rules', () => {
  describe('bad configurations give the reference messages', () => {
    const expected = JSON.parse(readFileSync(join(FIXTURES, 'bad', 'expected.json'), 'utf8')) as Record<
      string,
      string
    >;
    for (const [file, message] of Object.entries(expected)) {
      it(file, () => {
        // Stored as <name>.txt so that formatters leave the broken YAML alone.
        const content = readFileSync(join(FIXTURES, 'bad', `${file}.txt`), 'utf8');
        assert.throws(
          () => buildRuleSet([{ name: file, content }], { mergeDomains: false }),
          (err: unknown) => err instanceof RulesError && err.message === message,
        );
      });
    }
    it('YAML syntax errors read like Go yaml.v2 (messages checked against yaml.v2 v2.4.0)', () => {
      const cases: Array<[string, string]> = [
        ['domain: test-domain\ndescriptors: "abc', 'yaml: line 2: found unexpected end of stream'],
        ['domain: "abc', 'yaml: found unexpected end of stream'],
        ["domain: 'abc\n", 'yaml: line 2: found unexpected end of stream'],
        ['domain: a: b\n', 'yaml: mapping values are not allowed in this context'],
        ['domain: d\nkey: a: b\n', 'yaml: line 2: mapping values are not allowed in this context'],
        [
          'domain: d\ndescriptors:\n  - key: a\n   value: b\n',
          "yaml: line 3: did not find expected '-' indicator",
        ],
        [
          'domain: d\ndescriptors:\n  - key: a\n  value: b\n',
          "yaml: line 3: did not find expected '-' indicator",
        ],
        ['domain: d\n\tkey: a\n', 'yaml: line 2: found a tab character that violates indentation'],
        ['domain: d\ndescriptors: [\n', 'yaml: line 2: did not find expected node content'],
      ];
      for (const [content, message] of cases)
        assert.throws(() => buildRuleSet([{ name: 'f.yaml', content }], { mergeDomains: false }), {
          message: `f.yaml: error loading config file: ${message}`,
        });
    });
    it('type errors read like Go yaml.v2 decoding into the reference structs (checked against v2.4.0)', () => {
      const cases: Array<[string, string]> = [
        [
          'domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: -1}\n',
          'line 4: cannot unmarshal !!int `-1` into uint32',
        ],
        [
          'domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 4294967296}\n',
          'line 4: cannot unmarshal !!int `4294967296` into uint32',
        ],
        [
          'domain: d\ndescriptors: abc\n',
          'line 2: cannot unmarshal !!str `abc` into []config.YamlDescriptor',
        ],
        [
          'domain: d\ndescriptors:\n  - key: k\n    rate_limit: abc\n',
          'line 4: cannot unmarshal !!str `abc` into config.YamlRateLimit',
        ],
        [
          'domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, replaces: abc}\n',
          'line 4: cannot unmarshal !!str `abc` into []config.yamlReplaces',
        ],
        ['domain: d\ndescriptors:\n  - key: { domain: b }\n', 'line 3: cannot unmarshal !!map into string'],
        [
          'domain: d\ndescriptors:\n  - key: k\n    shadow_mode: abc\n    rate_limit: {unit: second, requests_per_unit: x}\n',
          'line 4: cannot unmarshal !!str `abc` into bool\n  line 5: cannot unmarshal !!str `x` into uint32',
        ],
      ];
      for (const [content, message] of cases)
        assert.throws(() => buildRuleSet([{ name: 'f.yaml', content }], { mergeDomains: false }), {
          message: `f.yaml: error loading config file: yaml: unmarshal errors:\n  ${message}`,
        });
    });
    it('duplicate domain across files unless merging', () => {
      const basic = readFileSync(join(FIXTURES, 'good', 'basic_config.yaml'), 'utf8');
      assert.throws(
        () =>
          buildRuleSet(
            [
              { name: 'basic_config.yaml', content: basic },
              { name: 'duplicate_domain.yaml', content: 'domain: test-domain\n' },
            ],
            { mergeDomains: false },
          ),
        { message: "duplicate_domain.yaml: duplicate domain 'test-domain' in config file" },
      );
    });
    it('merging domains still rejects a duplicate key across files', () => {
      const a = 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n';
      assert.throws(
        () =>
          buildRuleSet(
            [
              { name: 'a.yaml', content: a },
              { name: 'b.yaml', content: a },
            ],
            { mergeDomains: true },
          ),
        { message: "b.yaml: duplicate descriptor composite key 'd.k'" },
      );
    });
  });

  describe('matching (reference TestBasicConfig)', () => {
    // Built per test, not while the file loads: rules.ts code run at load makes each of its mutants
    // restart Stryker's worker (issue 13).
    let rules: RuleSet;
    beforeEach(() => {
      rules = goodRules(['basic_config.yaml']);
    });
    it('unknown domain and empty descriptors give no limit', () => {
      assert.equal(matchDescriptor(rules, 'foo_domain', [], undefined), 'domain_not_found');
      assert.equal(matchDescriptor(rules, 'test-domain', [], undefined), undefined);
    });
    it('a node without limit, or a limit at another depth, gives none', () => {
      assert.equal(m(matchDescriptor(rules, 'test-domain', e('key1', 'something'), undefined)), undefined);
      assert.equal(m(matchDescriptor(rules, 'test-domain', e('key1', 'value1'), undefined)), undefined);
      assert.equal(
        m(matchDescriptor(rules, 'test-domain', e('key2', 'value2', 'subkey', 'subvalue'), undefined)),
        undefined,
      );
      assert.equal(
        m(matchDescriptor(rules, 'test-domain', e('key5', 'value5', 'subkey5', 'subvalue'), undefined)),
        undefined,
      );
      assert.equal(m(matchDescriptor(rules, 'test-domain', e('key2', 'value3'), undefined)), undefined);
    });
    it('nested default and exact values', () => {
      const a = m(
        matchDescriptor(rules, 'test-domain', e('key1', 'value1', 'subkey1', 'something'), undefined),
      );
      assert.equal(a?.rule.limits[0]?.requestsPerUnit, 5);
      assert.equal(a?.rule.limits[0]?.unit, 'SECOND');
      assert.equal(a?.statKey, 'test-domain.key1_value1.subkey1');
      const b = m(
        matchDescriptor(rules, 'test-domain', e('key1', 'value1', 'subkey1', 'subvalue1'), undefined),
      );
      assert.equal(b?.rule.limits[0]?.requestsPerUnit, 10);
      assert.equal(b?.statKey, 'test-domain.key1_value1.subkey1_subvalue1');
    });
    it('exact beats key-only; units', () => {
      const a = m(matchDescriptor(rules, 'test-domain', e('key2', 'something'), undefined));
      assert.deepEqual(
        [a?.rule.limits[0]?.requestsPerUnit, a?.rule.limits[0]?.unit, a?.statKey],
        [20, 'MINUTE', 'test-domain.key2'],
      );
      const b = m(matchDescriptor(rules, 'test-domain', e('key2', 'value2'), undefined));
      assert.deepEqual([b?.rule.limits[0]?.requestsPerUnit, b?.statKey], [30, 'test-domain.key2_value2']);
      assert.equal(
        m(matchDescriptor(rules, 'test-domain', e('key3', 'foo'), undefined))?.rule.limits[0]?.unit,
        'HOUR',
      );
      assert.equal(
        m(matchDescriptor(rules, 'test-domain', e('key4', 'foo'), undefined))?.rule.limits[0]?.unit,
        'DAY',
      );
      assert.equal(
        m(matchDescriptor(rules, 'test-domain', e('key7', 'x'), undefined))?.rule.limits[0]?.unit,
        'WEEK',
      );
    });
    it('empty request value falls to the key-only node', () => {
      assert.equal(
        m(matchDescriptor(rules, 'test-domain', e('key2', ''), undefined))?.rule.limits[0]?.requestsPerUnit,
        20,
      );
    });
    it('keys are case-sensitive', () => {
      assert.equal(m(matchDescriptor(rules, 'test-domain', e('KEY2', 'x'), undefined)), undefined);
    });
    it('unlimited has no counted limits', () => {
      const u = m(matchDescriptor(rules, 'test-domain', e('key6', 'x'), undefined));
      assert.equal(u?.rule.unlimited, true);
      assert.equal(u?.rule.limits.length, 0);
    });
    it('an override applies whatever the config, with the override stats key', () => {
      const o = m(
        matchDescriptor(rules, 'test-domain', e('nope', 'v', 'k2', ''), {
          requestsPerUnit: 42,
          unit: 'HOUR',
        }),
      );
      assert.equal(o?.override, true);
      assert.equal(o?.rule.limits[0]?.requestsPerUnit, 42);
      assert.equal(o?.statKey, 'test-domain.nope_v.k2');
      assert.equal(
        matchDescriptor(rules, 'other', e('a', 'b'), { requestsPerUnit: 1, unit: 'SECOND' }),
        'domain_not_found',
      );
    });
  });

  describe('wildcards', () => {
    // Built per test, not while the file loads: rules.ts code run at load makes each of its mutants
    // restart Stryker's worker (issue 13).
    let rules: RuleSet;
    beforeEach(() => {
      rules = goodRules(['wildcard.yaml']);
    });
    const rpu = (...kv: string[]): number | undefined =>
      m(matchDescriptor(rules, 'wildcard', e(...kv), undefined))?.rule.limits[0]?.requestsPerUnit;
    it('trailing, middle and multiple stars (reference wildcard.yaml)', () => {
      assert.equal(rpu('wild', 'foo1'), 20);
      assert.equal(rpu('wild', 'foo2'), 20);
      assert.equal(rpu('wild', 'bar'), undefined);
      assert.equal(rpu('wild', 'barab'), 30);
      assert.equal(rpu('wild', 'bar123b'), 30);
      assert.equal(rpu('wild', 'barb'), 30);
      assert.equal(rpu('wild', 'bara'), undefined);
      assert.equal(rpu('wild', 'xbarb'), undefined);
      assert.equal(rpu('wild', 'foo'), 50);
    });
    it('patterns are tried in config order', () => {
      // foo123bar456baz matches foo* first
      assert.equal(rpu('wild', 'foo123bar456baz'), 20);
    });
    it('explicit value beats wildcard', () => {
      assert.equal(rpu('file', 'test1'), 50);
      assert.equal(rpu('file', 'test2'), 100);
    });
    it('wildcards at nested levels; `*` matches the empty value', () => {
      assert.equal(rpu('nested', 'abc', 'inner', 'x123y'), 3);
      assert.equal(rpu('nested', 'abc', 'inner', 'x123'), undefined);
      assert.equal(rpu('any', ''), 4);
      assert.equal(rpu('any', 'whatever'), 4);
    });
    it('stats key is the pattern; share_threshold shares one counter value', () => {
      assert.equal(
        m(matchDescriptor(rules, 'wildcard', e('wild', 'foo1'), undefined))?.statKey,
        'wildcard.wild_foo*',
      );
      const s = m(matchDescriptor(rules, 'wildcard', e('files', 'files/a.txt'), undefined));
      assert.deepEqual(s?.keyValues, ['files/*']);
      const n = m(matchDescriptor(rules, 'wildcard', e('wild', 'foo1'), undefined));
      assert.deepEqual(n?.keyValues, ['foo1']);
    });
    it('wildcardMatch', () => {
      const p = compileWildcard('k_foo*bar*baz');
      assert.ok(wildcardMatch(p, 'k_foobarbaz'));
      assert.ok(wildcardMatch(p, 'k_foo123bar456baz'));
      assert.ok(!wildcardMatch(p, 'k_foo123baz'));
      assert.ok(!wildcardMatch(compileWildcard('k_a*a'), 'k_a'));
      assert.ok(wildcardMatch(compileWildcard('k_a*a'), 'k_aa'));
    });
  });

  describe('other features', () => {
    it('merge-domain option joins files of one domain', () => {
      const rules = goodRules(['merge_a.yaml', 'merge_b.yaml'], true);
      assert.equal(
        m(matchDescriptor(rules, 'merged', e('a', 'x'), undefined))?.rule.limits[0]?.requestsPerUnit,
        1,
      );
      assert.equal(
        m(matchDescriptor(rules, 'merged', e('b', 'x'), undefined))?.rule.limits[0]?.requestsPerUnit,
        2,
      );
    });
    it('replaces, names, metadata, detailed metric, several limits, algorithm', () => {
      const rules = goodRules(['replaces.yaml', 'modes.yaml']);
      const r = m(matchDescriptor(rules, 'replaces', e('key2', 'x'), undefined));
      assert.deepEqual(r?.rule.replaces, ['key1-limit']);
      assert.equal(m(matchDescriptor(rules, 'replaces', e('key1', 'x'), undefined))?.rule.name, 'key1-limit');
      assert.deepEqual(m(matchDescriptor(rules, 'modes', e('meta', 'x'), undefined))?.rule.metadata, {
        team: 'payments',
        nested: { a: 1 },
      });
      assert.equal(
        m(matchDescriptor(rules, 'modes', e('detailed', 'v1'), undefined))?.statKey,
        'modes.detailed_v1',
      );
      const multi = m(matchDescriptor(rules, 'modes', e('multi', 'x'), undefined));
      assert.deepEqual(
        multi?.rule.limits.map((l) => [l.requestsPerUnit, l.unit, l.name, l.keyTag]),
        [
          [2, 'SECOND', 'burst', ''],
          [3, 'MINUTE', 'sustained', '_r0'],
        ],
      );
      assert.equal(
        m(matchDescriptor(rules, 'modes', e('smooth', 'x'), undefined))?.rule.limits[0]?.algorithm,
        'sliding_window',
      );
    });
    it('YAML 1.1 scalars as yaml.v2: numbers and booleans as string values keep their text', () => {
      const rules = buildRuleSet(
        [
          {
            name: 'x.yaml',
            content:
              'domain: 5\ndescriptors:\n  - key: on\n    value: 010\n    rate_limit: {unit: SECOND, requests_per_unit: 3}\n',
          },
        ],
        { mergeDomains: false },
      );
      assert.equal(
        m(matchDescriptor(rules, '5', e('on', '010'), undefined))?.rule.limits[0]?.requestsPerUnit,
        3,
      );
    });
    it('rule sets are frozen', () => {
      const rules = goodRules(['basic_config.yaml']);
      assert.ok(Object.isFrozen(rules));
      assert.ok(Object.isFrozen(rules.domains.get('test-domain')));
    });
  });
});
