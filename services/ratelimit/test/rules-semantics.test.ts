// What a loaded rule set means: the rule of each node (units, unlimited, replaces, modes, metadata,
// the rate_limits and algorithm extensions), the matching walk and its stats keys (reference
// GetLimit in envoyproxy/ratelimit src/config/config_impl.go), wildcards, the dump and freezing.
// Rule sets are built inside each test, never while the file loads (issue 13: Stryker restarts its
// worker for code run at load).
import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import {
  buildRuleSet,
  compileWildcard,
  dumpRuleSet,
  matchDescriptor,
  wildcardMatch,
  type Entry,
  type Match,
  type Rule,
  type RuleSet,
} from '../src/rules.ts';

const load = (content: string): RuleSet =>
  buildRuleSet([{ name: 'f.yaml', content }], { mergeDomains: false });

const e = (...kv: string[]): Entry[] => {
  const out: Entry[] = [];
  for (let i = 0; i < kv.length; i += 2) out.push({ key: kv[i] as string, value: kv[i + 1] as string });
  return out;
};

/** The match of `entries` in domain `d`, or undefined (asserting the domain exists). */
const match = (rules: RuleSet, ...kv: string[]): Match | undefined => {
  const r = matchDescriptor(rules, 'd', e(...kv), undefined);
  assert.notEqual(r, 'domain_not_found');
  return r === 'domain_not_found' ? undefined : r;
};

/** The rule of top-level descriptor `k` of a one-descriptor file. */
const ruleOf = (...lines: string[]): Rule | undefined =>
  load(`domain: d\ndescriptors:\n  - key: k\n${lines.map((l) => `    ${l}\n`).join('')}`)
    .domains.get('d')
    ?.children.get('k')?.rule;

describe('ratelimit/rules: meaning of a rule set', () => {
  describe('the rule of a node', () => {
    it('units are case-insensitive and cover the RLS enum', () => {
      const units: Array<[string, string]> = [
        ['second', 'SECOND'],
        ['Minute', 'MINUTE'],
        ['hOUR', 'HOUR'],
        ['day', 'DAY'],
        ['week', 'WEEK'],
        ['month', 'MONTH'],
        ['YEAR', 'YEAR'],
      ];
      for (const [raw, unit] of units)
        assert.equal(ruleOf(`rate_limit: {unit: ${raw}, requests_per_unit: 1}`)?.limits[0]?.unit, unit, raw);
    });
    it('a full rule: limit, flags, name, replaces, stats key', () => {
      const rule = ruleOf(
        'shadow_mode: true',
        'quota_mode: true',
        'detailed_metric: true',
        'rate_limit: {unit: hour, requests_per_unit: 7, name: lim, replaces: [{name: a}, {name: b}]}',
      );
      assert.deepEqual(rule, {
        limits: [{ requestsPerUnit: 7, unit: 'HOUR', name: 'lim', algorithm: 'fixed_window', keyTag: '' }],
        unlimited: false,
        shadowMode: true,
        quotaMode: true,
        name: 'lim',
        replaces: ['a', 'b'],
        detailedMetric: true,
        statKey: 'd.k',
        metadata: undefined,
      });
    });
    it('defaults: no flags, no name, no replaces, requests_per_unit 0', () => {
      assert.deepEqual(ruleOf('rate_limit: {unit: second}'), {
        limits: [{ requestsPerUnit: 0, unit: 'SECOND', name: '', algorithm: 'fixed_window', keyTag: '' }],
        unlimited: false,
        shadowMode: false,
        quotaMode: false,
        name: '',
        replaces: [],
        detailedMetric: false,
        statKey: 'd.k',
        metadata: undefined,
      });
    });
    it('unlimited keeps its name, replaces and flags but counts nothing', () => {
      const rule = ruleOf(
        'shadow_mode: true',
        'rate_limit: {unlimited: true, name: u, replaces: [{name: x}]}',
      );
      assert.equal(rule?.unlimited, true);
      assert.deepEqual(rule?.limits, []);
      assert.equal(rule?.name, 'u');
      assert.deepEqual(rule?.replaces, ['x']);
      assert.equal(rule?.shadowMode, true);
    });
    it('no rate_limit (absent or null) and no rate_limits: a node without a rule', () => {
      assert.equal(ruleOf('shadow_mode: true'), undefined);
      assert.equal(ruleOf('rate_limit: ~'), undefined);
      assert.equal(ruleOf('rate_limits: []'), undefined);
    });
    it('scalar fields keep their YAML source text (yaml.v2 into a Go string)', () => {
      const rules = load(
        'domain: d\ndescriptors:\n  - key: 12\n    value: yes\n    rate_limit: {unit: second, name: 0x1F, replaces: [{name: 017}]}\n',
      );
      const node = rules.domains.get('d')?.children.get('12_yes');
      assert.equal(node?.key, '12');
      assert.equal(node?.id, '12_yes');
      assert.equal(node?.rule?.name, '0x1F');
      assert.deepEqual(node?.rule?.replaces, ['017']);
    });
    it('a timestamp value keeps its text; escapes in double quotes are decoded', () => {
      const rules = load(
        'domain: d\ndescriptors:\n  - key: day\n    value: 2001-12-14\n  - key: esc\n    value: "a\\x41\\t"\n  - key: 2001-12-15\n',
      );
      assert.deepEqual(
        [...(rules.domains.get('d')?.children.keys() ?? [])],
        ['day_2001-12-14', 'esc_aA\t', '2001-12-15'],
      );
    });
    it('algorithm (extension): fixed_window by default or by name, sliding_window by name', () => {
      assert.equal(ruleOf('rate_limit: {unit: second, algorithm: ""}')?.limits[0]?.algorithm, 'fixed_window');
      assert.equal(
        ruleOf('rate_limit: {unit: second, algorithm: fixed_window}')?.limits[0]?.algorithm,
        'fixed_window',
      );
      assert.equal(
        ruleOf('rate_limit: {unit: second, algorithm: sliding_window}')?.limits[0]?.algorithm,
        'sliding_window',
      );
    });
    it('rate_limits (extension): one limit each after rate_limit, tagged by index, named or inheriting the name', () => {
      const rule = ruleOf(
        'rate_limit: {unit: second, requests_per_unit: 1, name: main}',
        'rate_limits:',
        '  - {unit: minute, requests_per_unit: 2}',
        '  - {unit: day, requests_per_unit: 3, name: daily, algorithm: sliding_window}',
      );
      assert.deepEqual(rule?.limits, [
        { requestsPerUnit: 1, unit: 'SECOND', name: 'main', algorithm: 'fixed_window', keyTag: '' },
        { requestsPerUnit: 2, unit: 'MINUTE', name: 'main', algorithm: 'fixed_window', keyTag: '_r0' },
        { requestsPerUnit: 3, unit: 'DAY', name: 'daily', algorithm: 'sliding_window', keyTag: '_r1' },
      ]);
      assert.equal(rule?.name, 'main');
    });
    it('rate_limits alone: a rule without a name or replaces', () => {
      const rule = ruleOf('quota_mode: true', 'rate_limits: [{unit: week, requests_per_unit: 9}]');
      assert.deepEqual(rule, {
        limits: [{ requestsPerUnit: 9, unit: 'WEEK', name: '', algorithm: 'fixed_window', keyTag: '_r0' }],
        unlimited: false,
        shadowMode: false,
        quotaMode: true,
        name: '',
        replaces: [],
        detailedMetric: false,
        statKey: 'd.k',
        metadata: undefined,
      });
    });
    it('metadata: a map becomes plain JS data, in document order', () => {
      const rule = ruleOf('rate_limit: {unit: second}', 'metadata: {z: 1, a: {b: [true, ~, "s"]}, m: -2}');
      assert.deepEqual(rule?.metadata, { z: 1, a: { b: [true, null, 's'] }, m: -2 });
      assert.deepEqual(Object.keys(rule?.metadata ?? {}), ['z', 'a', 'm']);
      assert.equal(ruleOf('rate_limit: {unit: second}', 'metadata: ~')?.metadata, undefined);
    });
    it('metadata keys that YAML 1.1 does not read as strings are kept, named as the reference names them', () => {
      // Right under `metadata` the reference decodes into map[string]interface{} (a key keeps its
      // source text, null is ''); deeper maps are printed with %v. Checked against yaml.v2 v2.4.0.
      const rule = ruleOf(
        'rate_limit: {unit: second}',
        'metadata: {n: -2, 0x10: c, ~: b, 1: a, on: x, deep: {n: 1, 0x10: 2, ~: 3, 1.50: 4}, tags: [{y: 5}, [y]]}',
      );
      assert.deepEqual(rule?.metadata, {
        n: -2,
        '0x10': 'c',
        '': 'b',
        '1': 'a',
        on: 'x',
        deep: { false: 1, '16': 2, '<nil>': 3, '1.5': 4 },
        tags: [{ true: 5 }, [true]],
      });
      assert.deepEqual(
        ruleOf('rate_limit: {unit: second}', 'metadata: {2001-12-14: a, b: {2001-12-15: c}}')?.metadata,
        {
          '2001-12-14': 'a',
          b: { '2001-12-15': 'c' },
        },
      );
    });
    it('a timestamp in metadata keeps its text', () => {
      assert.deepEqual(ruleOf('rate_limit: {unit: second}', 'metadata: {since: 2001-12-14}')?.metadata, {
        since: '2001-12-14',
      });
    });
    it('empty metadata is no metadata (the reference keeps nil for an empty map)', () => {
      assert.equal(ruleOf('rate_limit: {unit: second}', 'metadata: {}')?.metadata, undefined);
    });
    it('value_to_metric and share_threshold are node flags, off by default', () => {
      const rules = load(
        'domain: d\ndescriptors:\n  - key: a\n    value_to_metric: true\n  - key: b\n    value: "x*"\n    share_threshold: true\n  - key: c\n',
      );
      const root = rules.domains.get('d');
      assert.deepEqual(
        [...(root?.children.values() ?? [])].map((n) => [n.id, n.key, n.valueToMetric, n.shareThreshold]),
        [
          ['a', 'a', true, false],
          ['b_x*', 'b', false, true],
          ['c', 'c', false, false],
        ],
      );
    });
    it('wildcard children are listed with their split pattern, in config order', () => {
      const rules = load(
        'domain: d\ndescriptors:\n  - key: k\n    value: "b*"\n  - key: k\n    value: exact\n  - key: k\n    value: "a*x*"\n',
      );
      assert.deepEqual(rules.domains.get('d')?.wildcards, [
        { id: 'k_b*', segments: ['k_b', ''] },
        { id: 'k_a*x*', segments: ['k_a', 'x', ''] },
      ]);
    });
  });

  describe('several files', () => {
    it('the rule set lists its files; each domain is its own tree', () => {
      const rules = buildRuleSet(
        [
          {
            name: 'a.yaml',
            content: 'domain: a\ndescriptors: [{key: k, rate_limit: {unit: second, requests_per_unit: 1}}]\n',
          },
          {
            name: 'b.yaml',
            content: 'domain: b\ndescriptors: [{key: k, rate_limit: {unit: second, requests_per_unit: 2}}]\n',
          },
        ],
        { mergeDomains: false },
      );
      assert.deepEqual(rules.files, ['a.yaml', 'b.yaml']);
      assert.deepEqual([...rules.domains.keys()], ['a', 'b']);
      const rpu = (d: string): number | undefined => {
        const r = matchDescriptor(rules, d, e('k', 'v'), undefined);
        return r === 'domain_not_found' ? -1 : r?.rule.limits[0]?.requestsPerUnit;
      };
      assert.equal(rpu('a'), 1);
      assert.equal(rpu('b'), 2);
      assert.equal(rpu('c'), -1);
      assert.equal(rules.domains.get('a')?.id, 'a');
      assert.equal(rules.domains.get('a')?.key, 'a');
      assert.equal(rules.domains.get('a')?.rule, undefined);
    });
    it('merging adds a later file to the same tree, under the same stats prefix', () => {
      const rules = buildRuleSet(
        [
          {
            name: 'a.yaml',
            content: 'domain: m\ndescriptors: [{key: a, rate_limit: {unit: second, requests_per_unit: 1}}]\n',
          },
          {
            name: 'b.yaml',
            content: 'domain: m\ndescriptors: [{key: b, rate_limit: {unit: second, requests_per_unit: 2}}]\n',
          },
        ],
        { mergeDomains: true },
      );
      assert.deepEqual([...(rules.domains.get('m')?.children.keys() ?? [])], ['a', 'b']);
      assert.equal(rules.domains.get('m')?.children.get('b')?.rule?.statKey, 'm.b');
    });
  });

  describe('matching', () => {
    it('an override: fixed window, no name or flags, stats key of every entry', () => {
      const rules = load(
        'domain: d\ndescriptors: [{key: k, shadow_mode: true, rate_limit: {unit: second, name: n}}]\n',
      );
      const o = matchDescriptor(rules, 'd', e('k', 'v', 'x', ''), { requestsPerUnit: 5, unit: 'MINUTE' });
      assert.deepEqual(o, {
        rule: {
          limits: [{ requestsPerUnit: 5, unit: 'MINUTE', name: '', algorithm: 'fixed_window', keyTag: '' }],
          unlimited: false,
          shadowMode: false,
          quotaMode: false,
          name: '',
          replaces: [],
          detailedMetric: false,
          statKey: 'd.k_v.x',
          metadata: undefined,
        },
        statKey: 'd.k_v.x',
        keyValues: ['v', ''],
        override: true,
      });
    });
    it('a config match: the node rule, the request values, not an override', () => {
      const rules = load(
        'domain: d\ndescriptors: [{key: k, rate_limit: {unit: second, requests_per_unit: 3}}]\n',
      );
      const r = match(rules, 'k', 'v');
      assert.equal(r?.rule, rules.domains.get('d')?.children.get('k')?.rule);
      assert.deepEqual(r?.keyValues, ['v']);
      assert.equal(r?.override, false);
      assert.equal(r?.statKey, 'd.k');
    });
    it('no backtracking: an exact match whose subtree does not match is not retried by key', () => {
      const rules = load(
        'domain: d\ndescriptors:\n  - key: a\n    value: "1"\n    descriptors: [{key: b, value: x, rate_limit: {unit: second}}]\n  - key: a\n    descriptors: [{key: b, rate_limit: {unit: minute}}]\n',
      );
      assert.equal(match(rules, 'a', '1', 'b', 'y'), undefined);
      assert.equal(match(rules, 'a', '2', 'b', 'y')?.rule.limits[0]?.unit, 'MINUTE');
      assert.equal(match(rules, 'a', '1', 'b', 'x')?.rule.limits[0]?.unit, 'SECOND');
    });
    it('only the node at the request depth gives the limit; a deeper request past a leaf gives none', () => {
      const rules = load(
        'domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second}\n    descriptors: [{key: b, rate_limit: {unit: minute}}]\n  - key: leaf\n    rate_limit: {unit: hour}\n',
      );
      assert.equal(match(rules, 'a', 'v')?.rule.limits[0]?.unit, 'SECOND');
      assert.equal(match(rules, 'a', 'v', 'b', 'w')?.rule.limits[0]?.unit, 'MINUTE');
      assert.equal(match(rules, 'a', 'v', 'c', 'w'), undefined);
      assert.equal(match(rules, 'a', 'v', 'b', 'w', 'c', 'x'), undefined);
      assert.equal(match(rules, 'leaf', 'v')?.rule.limits[0]?.unit, 'HOUR');
      assert.equal(match(rules, 'leaf', 'v', 'b', 'w'), undefined);
      assert.equal(match(rules, 'nope', 'v'), undefined);
      assert.equal(match(rules, 'nope', 'v', 'a', 'v'), undefined);
    });
    it('the first matching wildcard in config order wins; the key-only node comes last', () => {
      const rules = load(
        'domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: day}\n  - key: k\n    value: "a*"\n    rate_limit: {unit: second}\n  - key: k\n    value: "ab*"\n    rate_limit: {unit: minute}\n  - key: k\n    value: abc\n    rate_limit: {unit: hour}\n',
      );
      assert.equal(match(rules, 'k', 'abd')?.rule.limits[0]?.unit, 'SECOND');
      assert.equal(match(rules, 'k', 'abc')?.rule.limits[0]?.unit, 'HOUR');
      assert.equal(match(rules, 'k', 'b')?.rule.limits[0]?.unit, 'DAY');
      assert.equal(match(rules, 'k', 'abd')?.statKey, 'd.k_a*');
      assert.equal(match(rules, 'k', 'b')?.statKey, 'd.k');
    });
    it('a wildcard key is part of the pattern: another key with the same value does not match', () => {
      const rules = load(
        'domain: d\ndescriptors:\n  - key: k\n    value: "v*"\n    rate_limit: {unit: second}\n',
      );
      assert.ok(match(rules, 'k', 'v1'));
      assert.equal(match(rules, 'kk', 'v1'), undefined);
      assert.equal(match(rules, 'x', 'k_v1'), undefined);
    });
    it('a wildcard node with children is walked into; share_threshold applies to its entry only', () => {
      const rules = load(
        'domain: d\ndescriptors:\n  - key: path\n    value: "/api/*"\n    share_threshold: true\n    descriptors:\n      - key: user\n        value: "u*"\n        rate_limit: {unit: second}\n',
      );
      const r = match(rules, 'path', '/api/x', 'user', 'u1');
      assert.deepEqual(r?.keyValues, ['/api/*', 'u1']);
      assert.equal(r?.statKey, 'd.path_/api/*.user_u*');
    });
  });

  describe('stats keys (reference value_to_metric and detailed_metric)', () => {
    const tree =
      'domain: d\ndescriptors:\n' +
      '  - key: exact\n    value: v\n    value_to_metric: true\n    rate_limit: {unit: second}\n' +
      '  - key: plain\n    rate_limit: {unit: second}\n' +
      '  - key: vtm\n    value_to_metric: true\n    rate_limit: {unit: second}\n' +
      '  - key: wild\n    value: "w*"\n    rate_limit: {unit: second}\n' +
      '  - key: wvtm\n    value: "w*"\n    value_to_metric: true\n    rate_limit: {unit: second}\n' +
      '  - key: share\n    value: "s*"\n    share_threshold: true\n    value_to_metric: true\n    rate_limit: {unit: second}\n' +
      '  - key: det\n    detailed_metric: true\n    descriptors:\n' +
      '      - key: sub\n        detailed_metric: true\n        rate_limit: {unit: second}\n' +
      '  - key: dshare\n    value: "s*"\n    share_threshold: true\n    descriptors:\n' +
      '      - key: sub\n        detailed_metric: true\n        rate_limit: {unit: second}\n';
    it('exact: the configured key_value', () => {
      assert.equal(match(load(tree), 'exact', 'v')?.statKey, 'd.exact_v');
    });
    it('key-only: the key, or key_value with value_to_metric (the key alone for an empty value)', () => {
      const rules = load(tree);
      assert.equal(match(rules, 'plain', 'x')?.statKey, 'd.plain');
      assert.equal(match(rules, 'vtm', 'x')?.statKey, 'd.vtm_x');
      assert.equal(match(rules, 'vtm', '')?.statKey, 'd.vtm');
    });
    it('wildcard: the pattern, or the value with value_to_metric, but the pattern with share_threshold', () => {
      const rules = load(tree);
      assert.equal(match(rules, 'wild', 'w1')?.statKey, 'd.wild_w*');
      assert.equal(match(rules, 'wvtm', 'w1')?.statKey, 'd.wvtm_w1');
      assert.equal(match(rules, 'share', 's1')?.statKey, 'd.share_s*');
      assert.deepEqual(match(rules, 'share', 's1')?.keyValues, ['s*']);
      assert.deepEqual(match(rules, 'wvtm', 'w1')?.keyValues, ['w1']);
    });
    it('detailed_metric: every entry as key_value, with the share_threshold pattern', () => {
      const rules = load(tree);
      assert.equal(match(rules, 'det', 'a', 'sub', 'b')?.statKey, 'd.det_a.sub_b');
      assert.equal(match(rules, 'dshare', 's9', 'sub', 'b')?.statKey, 'd.dshare_s*.sub_b');
    });
    it('detailed_metric with an empty value: k_ as the reference, but k when a share_threshold pattern is in the key', () => {
      const rules = load(tree);
      assert.equal(match(rules, 'det', '', 'sub', '')?.statKey, 'd.det_.sub_');
      assert.equal(match(rules, 'dshare', 's9', 'sub', '')?.statKey, 'd.dshare_s*.sub');
    });
  });

  describe('wildcardMatch', () => {
    const ok = (pattern: string, text: string): boolean => wildcardMatch(compileWildcard(pattern), text);
    it('without a star: equality', () => {
      assert.deepEqual(compileWildcard('k_v'), ['k_v']);
      assert.equal(ok('k_v', 'k_v'), true);
      assert.equal(ok('k_v', 'k_vv'), false);
      assert.equal(ok('k_v', 'k_'), false);
    });
    it('prefix and suffix are both required', () => {
      assert.equal(ok('a*z', 'abcz'), true);
      assert.equal(ok('a*z', 'bcz'), false);
      assert.equal(ok('a*z', 'abc'), false);
      assert.equal(ok('a*', 'a'), true);
      assert.equal(ok('*z', 'z'), true);
      assert.equal(ok('*', ''), true);
    });
    it('prefix and suffix may not overlap', () => {
      assert.equal(ok('ab*bc', 'abc'), false);
      assert.equal(ok('ab*bc', 'abbc'), true);
    });
    it('middle segments in order, between prefix and suffix', () => {
      assert.equal(ok('a*b*c*d', 'abcd'), true);
      assert.equal(ok('a*b*c*d', 'axbxcxd'), true);
      assert.equal(ok('a*c*b*d', 'abcd'), false);
      assert.equal(ok('a*bc*c', 'abc'), false);
      assert.equal(ok('a*bc*c', 'abcc'), true);
      assert.equal(ok('a*x*z', 'az'), false);
      assert.equal(ok('a*x*z', 'axz'), true);
      assert.equal(ok('a*x*z', 'azxz'), true);
      assert.equal(ok('a**z', 'az'), true);
    });
    it('a middle segment is searched after the previous one', () => {
      assert.equal(ok('k*ab*ab*z', 'kabz'), false);
      assert.equal(ok('k*ab*ab*z', 'kababz'), true);
      assert.equal(ok('k*ab*ab*z', 'kabababz'), true);
    });
  });

  describe('dump and freezing', () => {
    it('dumpRuleSet: one line per rule, depth first in config order, names and replaces when set', () => {
      const rules = load(
        'domain: d\ndescriptors:\n' +
          '  - key: a\n    shadow_mode: true\n    rate_limit: {unit: second, requests_per_unit: 1, name: an, replaces: [{name: x}]}\n' +
          '    rate_limits: [{unit: minute, requests_per_unit: 2, name: per-min}, {unit: hour, requests_per_unit: 3}]\n' +
          '    descriptors: [{key: b, quota_mode: true, rate_limit: {unit: day, requests_per_unit: 4, algorithm: sliding_window}}]\n' +
          '  - key: n\n  - key: u\n    rate_limit: {unlimited: true}\n',
      );
      assert.deepEqual(dumpRuleSet(rules), [
        {
          key: 'd.a',
          unlimited: false,
          shadow_mode: true,
          quota_mode: false,
          name: 'an',
          replaces: ['x'],
          limits: [
            { requests_per_unit: 1, unit: 'SECOND', algorithm: 'fixed_window', name: 'an' },
            { requests_per_unit: 2, unit: 'MINUTE', algorithm: 'fixed_window', name: 'per-min' },
            { requests_per_unit: 3, unit: 'HOUR', algorithm: 'fixed_window', name: 'an' },
          ],
        },
        {
          key: 'd.a.b',
          unlimited: false,
          shadow_mode: false,
          quota_mode: true,
          limits: [{ requests_per_unit: 4, unit: 'DAY', algorithm: 'sliding_window' }],
        },
        { key: 'd.u', unlimited: true, shadow_mode: false, quota_mode: false, limits: [] },
      ]);
    });
    it('every node, wildcard, rule and limit is frozen', () => {
      const rules = load(
        'domain: d\ndescriptors:\n  - key: a\n    value: "x*"\n    descriptors:\n      - key: b\n        rate_limit: {unit: second}\n        rate_limits: [{unit: minute}]\n',
      );
      const root = rules.domains.get('d');
      const a = root?.children.get('a_x*');
      const b = a?.children.get('b');
      assert.ok(Object.isFrozen(rules));
      assert.ok(Object.isFrozen(rules.files));
      for (const x of [
        root,
        a,
        b,
        root?.wildcards,
        root?.wildcards[0],
        b?.rule,
        b?.rule?.limits,
        b?.rule?.limits[0],
        b?.rule?.limits[1],
      ])
        assert.ok(x !== undefined && Object.isFrozen(x));
    });
  });
});
