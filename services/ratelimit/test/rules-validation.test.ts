// Configuration errors of rules.ts, message by message: users read them, and the reference
// (envoyproxy/ratelimit src/config/config_impl.go with gopkg.in/yaml.v2 v2.4.0) fixes their text.
// The YAML decoding messages were checked against yaml.v2 v2.4.0 itself. Rule sets are built inside
// each test, never while the file loads (issue 13: Stryker restarts its worker for code run at load).
import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { buildRuleSet, type RuleSet } from '../src/rules.ts';
import { RulesError } from '../src/errors.ts';

const load = (content: string, name = 'f.yaml'): RuleSet =>
  buildRuleSet([{ name, content }], { mergeDomains: false });

/** Asserts that loading `content` as `f.yaml` fails with exactly `detail` (after the file prefix). */
const fails = (content: string, detail: string): void => {
  assert.throws(
    () => load(content),
    (err: unknown) => {
      assert.ok(err instanceof RulesError, `not a RulesError: ${String(err)}`);
      assert.equal(err.message, `f.yaml: ${detail}`);
      assert.equal(err.file, 'f.yaml');
      assert.equal(err.detail, detail);
      assert.equal(err.code, 'ERR_RULES');
      return true;
    },
  );
};

/** One descriptor `k` under domain `d`, with the given extra lines (4-space indented). */
const one = (...lines: string[]): string =>
  `domain: d\ndescriptors:\n  - key: k\n${lines.map((l) => `    ${l}\n`).join('')}`;

describe('ratelimit/rules: configuration errors', () => {
  describe('key validation (validateYamlKeys)', () => {
    it('a non-string key is shown as Go prints the decoded value', () => {
      fails('domain: d\n~: x\n', 'config error, key is not of type string: <nil>');
      fails('domain: d\ntrue: x\n', 'config error, key is not of type string: true');
      fails('domain: d\n7: x\n', 'config error, key is not of type string: 7');
      fails('domain: d\n0x10: x\n', 'config error, key is not of type string: 16');
      fails(one('rate_limit: {1.5: x}'), 'config error, key is not of type string: 1.5');
    });
    it('an unknown key is refused at any depth, by its name', () => {
      fails('domain: d\ndescriptor: []\n', "config error, unknown key 'descriptor'");
      fails(one('rate_limit: {units: second}'), "config error, unknown key 'units'");
      fails(one('rate_limit: {unit: second, replaces: [{nam: a}]}'), "config error, unknown key 'nam'");
      fails(one('descriptors: [{key: a, vlaue: b}]'), "config error, unknown key 'vlaue'");
    });
    it('every documented key (and the two extensions) is accepted', () => {
      const rules = load(
        one(
          'value: v',
          'shadow_mode: true',
          'quota_mode: true',
          'detailed_metric: true',
          'value_to_metric: true',
          'metadata: {a: b}',
          'rate_limit: {unit: second, requests_per_unit: 1, name: n, unlimited: false, replaces: [{name: x}], algorithm: fixed_window}',
          'rate_limits: [{unit: minute}]',
          'descriptors: [{key: w, value: "a*", share_threshold: true}]',
        ),
      );
      assert.deepEqual([...rules.domains.keys()], ['d']);
    });
    it('metadata keys are free-form: unknown and non-string keys are not checked', () => {
      const rules = load(
        one('metadata: {anything: {deep: [1, {ratelimit: 2}]}}', 'rate_limit: {unit: second}'),
      );
      assert.deepEqual(rules.domains.get('d')?.children.get('k')?.rule?.metadata, {
        anything: { deep: [1, { ratelimit: 2 }] },
      });
    });
    it('a list element that is not a map is shown as Go prints it', () => {
      fails(
        'domain: d\ndescriptors: [a]\n',
        'config error, yaml file contains list of type other than map: a',
      );
      fails(
        'domain: d\ndescriptors: [~]\n',
        'config error, yaml file contains list of type other than map: <nil>',
      );
      fails(
        'domain: d\ndescriptors: [3]\n',
        'config error, yaml file contains list of type other than map: 3',
      );
      fails(
        'domain: d\ndescriptors: [2001-12-14]\n',
        'config error, yaml file contains list of type other than map: 2001-12-14',
      );
      fails(
        'domain: d\ndescriptors: [false]\n',
        'config error, yaml file contains list of type other than map: false',
      );
      fails(
        'domain: d\ndescriptors: [[a, 1, ~]]\n',
        'config error, yaml file contains list of type other than map: [a 1 <nil>]',
      );
      fails(
        'domain: d\ndescriptors: [{key: a}, b]\n',
        'config error, yaml file contains list of type other than map: b',
      );
      fails(
        one('rate_limit: {unit: second, replaces: [a]}'),
        'config error, yaml file contains list of type other than map: a',
      );
    });
    it('a list inside metadata may hold anything', () => {
      const rules = load(one('metadata: {tags: [a, 1, ~, [b]]}', 'rate_limit: {unit: second}'));
      assert.deepEqual(rules.domains.get('d')?.children.get('k')?.rule?.metadata, {
        tags: ['a', 1, null, ['b']],
      });
    });
    it('a float leaf fails the check, outside metadata only', () => {
      fails(one('rate_limit: {unit: second, requests_per_unit: 1.5}'), 'error checking config');
      fails(one('value: 2.5'), 'error checking config');
      const rules = load(one('metadata: {ratio: 0.5}', 'rate_limit: {unit: second}'));
      assert.deepEqual(rules.domains.get('d')?.children.get('k')?.rule?.metadata, { ratio: 0.5 });
    });
  });

  describe('typed decode (yaml.v2 into the reference structs)', () => {
    const unmarshal = (...lines: string[]): string =>
      `error loading config file: yaml: unmarshal errors:\n${lines.map((l) => `  ${l}`).join('\n')}`;
    it('booleans refuse other scalars and collections, naming the line', () => {
      fails(one('shadow_mode: 1'), unmarshal('line 4: cannot unmarshal !!int `1` into bool'));
      fails(one('quota_mode: maybe'), unmarshal('line 4: cannot unmarshal !!str `maybe` into bool'));
      fails(one('detailed_metric: [{key: a}]'), unmarshal('line 4: cannot unmarshal !!seq into bool'));
      fails(one('value_to_metric: {key: a}'), unmarshal('line 4: cannot unmarshal !!map into bool'));
      fails(
        one('rate_limit: {unit: second, unlimited: 0}'),
        unmarshal('line 4: cannot unmarshal !!int `0` into bool'),
      );
    });
    it('YAML 1.1 booleans (yes, on, off) are booleans', () => {
      const rules = load(
        one('shadow_mode: yes', 'quota_mode: on', 'detailed_metric: off', 'rate_limit: {unit: second}'),
      );
      const rule = rules.domains.get('d')?.children.get('k')?.rule;
      assert.deepEqual([rule?.shadowMode, rule?.quotaMode, rule?.detailedMetric], [true, true, false]);
    });
    it('requests_per_unit is a uint32', () => {
      fails(
        one('rate_limit: {unit: second, requests_per_unit: "5"}'),
        unmarshal('line 4: cannot unmarshal !!str `5` into uint32'),
      );
      fails(
        one('rate_limit: {unit: second, requests_per_unit: true}'),
        unmarshal('line 4: cannot unmarshal !!bool `true` into uint32'),
      );
      fails(
        one('rate_limit: {unit: second, requests_per_unit: [{name: a}]}'),
        unmarshal('line 4: cannot unmarshal !!seq into uint32'),
      );
      const rules = load(one('rate_limit: {unit: second, requests_per_unit: 4294967295}'));
      assert.equal(rules.domains.get('d')?.children.get('k')?.rule?.limits[0]?.requestsPerUnit, 4294967295);
      const zero = load(one('rate_limit: {unit: second, requests_per_unit: 0}'));
      assert.equal(zero.domains.get('d')?.children.get('k')?.rule?.limits[0]?.requestsPerUnit, 0);
    });
    it('strings refuse collections; any scalar is a string', () => {
      fails(one('value: [{key: a}]'), unmarshal('line 4: cannot unmarshal !!seq into string'));
      fails(one('rate_limit: {unit: {key: a}}'), unmarshal('line 4: cannot unmarshal !!map into string'));
      fails(
        one('rate_limit: {unit: second, algorithm: [{key: a}]}'),
        unmarshal('line 4: cannot unmarshal !!seq into string'),
      );
    });
    it('maps and lists refuse scalars, with the Go type of the field', () => {
      fails(
        one('rate_limit: [{unit: second}]'),
        unmarshal('line 4: cannot unmarshal !!seq into config.YamlRateLimit'),
      );
      fails(
        one('descriptors: {key: a}'),
        unmarshal('line 4: cannot unmarshal !!map into []config.YamlDescriptor'),
      );
      fails(
        one('rate_limits: 3'),
        unmarshal('line 4: cannot unmarshal !!int `3` into []config.YamlDescriptor'),
      );
      fails(
        one('rate_limit: {unit: second, replaces: {name: a}}'),
        unmarshal('line 4: cannot unmarshal !!map into []config.yamlReplaces'),
      );
    });
    it('fields inside lists and nested maps are checked too, every error in document order', () => {
      fails(
        'domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n        shadow_mode: x\n  - key: c\n    rate_limits:\n      - unit: second\n        requests_per_unit: z\n',
        unmarshal(
          'line 6: cannot unmarshal !!str `x` into bool',
          'line 10: cannot unmarshal !!str `z` into uint32',
        ),
      );
    });
    it('null values decode as the zero value', () => {
      const rules = load(
        one(
          'value: ~',
          'shadow_mode: ~',
          'descriptors: ~',
          'rate_limit: {unit: second, requests_per_unit: ~, name: ~}',
        ),
      );
      const node = rules.domains.get('d')?.children.get('k');
      assert.equal(node?.id, 'k');
      assert.equal(node?.rule?.shadowMode, false);
      assert.equal(node?.rule?.limits[0]?.requestsPerUnit, 0);
      assert.equal(node?.rule?.name, '');
      assert.equal(node?.children.size, 0);
    });
  });

  describe('type error text as yaml.v2 shows it (checked against v2.4.0)', () => {
    const unmarshal = (...lines: string[]): string =>
      `error loading config file: yaml: unmarshal errors:\n${lines.map((l) => `  ${l}`).join('\n')}`;
    it('a scalar is shown by its source text and resolved tag, not its decoded value', () => {
      fails(
        one(
          'detailed_metric: 0x10',
          'rate_limit: {unit: second, requests_per_unit: y}',
          'value_to_metric: 2001-12-14',
        ),
        unmarshal(
          'line 4: cannot unmarshal !!int `0x10` into bool',
          'line 5: cannot unmarshal !!bool `y` into uint32',
          'line 6: cannot unmarshal !!timestamp `2001-12-14` into bool',
        ),
      );
    });
    it('an explicit tag is the one shown', () => {
      fails(one('quota_mode: !!str 7'), unmarshal('line 4: cannot unmarshal !!str `7` into bool'));
    });
    it('a local or a binary tag is shown as written', () => {
      fails(
        one('shadow_mode: !foo x', 'quota_mode: !!binary aGVsbG8='),
        unmarshal(
          'line 4: cannot unmarshal !foo `x` into bool',
          'line 5: cannot unmarshal !!binary `aGVsbG8=` into bool',
        ),
      );
    });
    it('a value longer than 10 bytes is cut to 7 bytes and `...`', () => {
      fails(
        one(
          'shadow_mode: abcdefghijk',
          'quota_mode: abcdefghij',
          'rate_limit: {unit: second, requests_per_unit: abcdéfghijk}',
        ),
        unmarshal(
          'line 4: cannot unmarshal !!str `abcdefg...` into bool',
          'line 5: cannot unmarshal !!str `abcdefghij` into bool',
          'line 6: cannot unmarshal !!str `abcdéf...` into uint32',
        ),
      );
    });
    it('a root that is a scalar names its tag, text and line', () => {
      const root = (line: number, shown: string): string =>
        `error loading config file: yaml: unmarshal errors:\n  line ${line}: cannot unmarshal ${shown} into map[interface {}]interface {}`;
      fails('abc\n', root(1, '!!str `abc`'));
      fails('5\n', root(1, '!!int `5`'));
      fails('1.5\n', root(1, '!!float `1.5`'));
      fails('# c\n\nabcdefghijklmno\n', root(3, '!!str `abcdefg...`'));
    });
    it('metadata must be a map (the reference decodes it into map[string]interface{})', () => {
      fails(
        'domain: d\ndescriptors:\n  - key: k\n    metadata: abc\n  - key: j\n    metadata: [a]\n',
        unmarshal(
          'line 4: cannot unmarshal !!str `abc` into map[string]interface {}',
          'line 6: cannot unmarshal !!seq into map[string]interface {}',
        ),
      );
    });
  });

  describe('YAML streams, anchors and reserved characters as yaml.v2 reads them (checked against v2.4.0)', () => {
    it('an alias to an anchor not defined before it is an error, not a null value', () => {
      fails('domain: *x\n', "error loading config file: yaml: unknown anchor 'x' referenced");
      fails(
        one('value: *v', 'rate_limit: {unit: second}'),
        "error loading config file: yaml: unknown anchor 'v' referenced",
      );
      fails(
        one('rate_limit: {unit: *u}') + 'u: &u second\n',
        "error loading config file: yaml: unknown anchor 'u' referenced",
      );
    });
    it('anchors defined before their aliases are followed', () => {
      const rules = load(
        'domain: &d d\ndescriptors:\n  - key: *d\n    rate_limit: &r {unit: minute, requests_per_unit: 4}\n  - key: e\n    rate_limit: *r\n',
      );
      const root = rules.domains.get('d');
      assert.deepEqual(
        [...(root?.children.values() ?? [])].map((n) => [
          n.id,
          n.rule?.limits[0]?.requestsPerUnit,
          n.rule?.limits[0]?.unit,
        ]),
        [
          ['d', 4, 'MINUTE'],
          ['e', 4, 'MINUTE'],
        ],
      );
    });
    it('only the first document of a stream is read', () => {
      const rules = load('domain: d\n---\ndomain: e\n---\n[\n');
      assert.deepEqual([...rules.domains.keys()], ['d']);
      fails('---\n---\ndomain: d\n', 'config file cannot have empty domain');
    });
    it('an unknown escape in a double-quoted string', () => {
      fails('domain: "\\q"\n', 'error loading config file: yaml: found unknown escape character');
      fails(
        'domain: d\nx: y\nz: "\\q"\n',
        'error loading config file: yaml: line 3: found unknown escape character',
      );
    });
    it('a value starting with a flow indicator has no node content (a parser error: the line before)', () => {
      fails('domain: ,\n', 'error loading config file: yaml: did not find expected node content');
      fails(
        'domain: d\nx: ,\n',
        'error loading config file: yaml: line 1: did not find expected node content',
      );
      fails(
        'domain: d\nx: y\nz: ,\n',
        'error loading config file: yaml: line 2: did not find expected node content',
      );
    });
    it('other syntax errors: the line and the parser message without its position (no yaml.v2 text to copy)', () => {
      const padding = Array.from({ length: 10 }, (_, i) => `a${i}: 1\n`).join('');
      fails(
        `domain: d\n${padding}abcdefghij: &a &b x\n`,
        'error loading config file: yaml: line 12: A node can have at most one anchor',
      );
    });
    it('an unclosed flow map', () => {
      fails('domain: {a: 1\n', "error loading config file: yaml: line 1: did not find expected ',' or '}'");
      fails(
        'domain: d\nx: {a: 1\n',
        "error loading config file: yaml: line 2: did not find expected ',' or '}'",
      );
    });
    it('a key repeated in one map: the last one counts', () => {
      assert.deepEqual([...load('domain: a\ndomain: b\n').domains.keys()], ['b']);
    });
    it('a key without a value is null', () => {
      const rules = load('domain: d\n? descriptors\n');
      assert.equal(rules.domains.get('d')?.children.size, 0);
      fails('domain: d\ndescriptors:\n  - ? key\n', 'descriptor has empty key');
    });
    it('a plain value may not start with a reserved character', () => {
      fails('@a\n', 'error loading config file: yaml: found character that cannot start any token');
      fails(
        'domain: d\nx: `a\n',
        'error loading config file: yaml: line 2: found character that cannot start any token',
      );
    });
  });

  describe('file-level errors', () => {
    it('an empty file or a file of comments has no domain', () => {
      fails('', 'config file cannot have empty domain');
      fails('# nothing here\n', 'config file cannot have empty domain');
      fails('domain: ~\n', 'config file cannot have empty domain');
      fails("domain: ''\n", 'config file cannot have empty domain');
    });
    it('a root that is not a map', () => {
      fails(
        '- a\n',
        'error loading config file: yaml: unmarshal errors:\n  line 1: cannot unmarshal !!seq into map[interface {}]interface {}',
      );
    });
    it('the file name prefixes the message', () => {
      assert.throws(() => load('domain: ""\n', 'runtime/config.yaml'), {
        message: 'runtime/config.yaml: config file cannot have empty domain',
      });
    });
    it('the first bad file of several stops the load', () => {
      assert.throws(
        () =>
          buildRuleSet(
            [
              { name: 'a.yaml', content: 'domain: a\n' },
              { name: 'b.yaml', content: 'domain: b\nbad: 1\n' },
              { name: 'c.yaml', content: 'domain: ""\n' },
            ],
            { mergeDomains: false },
          ),
        { message: "b.yaml: config error, unknown key 'bad'" },
      );
    });
    it('a duplicate domain is refused without merging, and names the later file', () => {
      assert.throws(
        () =>
          buildRuleSet(
            [
              { name: 'a.yaml', content: 'domain: x\n' },
              { name: 'b.yaml', content: 'domain: y\n' },
              { name: 'c.yaml', content: 'domain: x\n' },
            ],
            { mergeDomains: false },
          ),
        { message: "c.yaml: duplicate domain 'x' in config file" },
      );
    });
  });

  describe('descriptor errors', () => {
    it('empty or missing key', () => {
      fails('domain: d\ndescriptors:\n  - value: v\n', 'descriptor has empty key');
      fails('domain: d\ndescriptors:\n  - key: ""\n', 'descriptor has empty key');
      fails(
        'domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - key: ~\n',
        'descriptor has empty key',
      );
    });
    it('a duplicate composite key names the full path', () => {
      fails(
        'domain: d\ndescriptors:\n  - key: a\n    value: "1"\n    descriptors:\n      - key: b\n      - key: b\n',
        "duplicate descriptor composite key 'd.a_1.b'",
      );
      fails(
        'domain: d\ndescriptors:\n  - key: a\n  - key: a\n    value: ""\n',
        "duplicate descriptor composite key 'd.a'",
      );
      // the same key with and without a value are different nodes
      const rules = load('domain: d\ndescriptors:\n  - key: a\n  - key: a\n    value: b\n');
      assert.deepEqual([...(rules.domains.get('d')?.children.keys() ?? [])], ['a', 'a_b']);
    });
    it('unit: required unless unlimited, case-insensitive, from the RLS enum', () => {
      fails(one('rate_limit: {requests_per_unit: 1}'), "invalid rate limit unit ''");
      fails(one('rate_limit: {}'), "invalid rate limit unit ''");
      fails(one('rate_limit: {unit: seconds}'), "invalid rate limit unit 'seconds'");
      fails(one('rate_limit: {unit: unknown}'), "invalid rate limit unit 'unknown'");
      fails(one('rate_limit: {unit: " second"}'), "invalid rate limit unit ' second'");
      fails(one('rate_limit: {unit: 5}'), "invalid rate limit unit '5'");
    });
    it('unlimited: no unit allowed, an invalid one is ignored', () => {
      fails(
        one('rate_limit: {unlimited: true, unit: Second}'),
        'should not specify rate limit unit when unlimited',
      );
      const rules = load(one('rate_limit: {unlimited: true, unit: fortnight, requests_per_unit: 5}'));
      const rule = rules.domains.get('d')?.children.get('k')?.rule;
      assert.equal(rule?.unlimited, true);
      assert.deepEqual(rule?.limits, []);
    });
    it('replaces: no empty name, not its own name; the empty check comes first', () => {
      fails(
        one('rate_limit: {unit: second, name: a, replaces: [{name: b}, {}]}'),
        'should not have an empty replaces entry',
      );
      fails(
        one('rate_limit: {unit: second, replaces: [{name: ""}]}'),
        'should not have an empty replaces entry',
      );
      fails(
        one('rate_limit: {unit: second, name: a, replaces: [{name: b}, {name: a}]}'),
        'replaces should not contain name of same descriptor',
      );
      fails(
        one('rate_limit: {unlimited: true, name: a, replaces: [{name: a}]}'),
        'replaces should not contain name of same descriptor',
      );
    });
    it('share_threshold only on a wildcard value, naming the node id', () => {
      fails(
        one('value: v', 'share_threshold: true'),
        "share_threshold can only be used with wildcard values (containing '*'), but found key 'k_v'",
      );
      fails(
        one('share_threshold: true'),
        "share_threshold can only be used with wildcard values (containing '*'), but found key 'k'",
      );
      const rules = load(one('value: "*"', 'share_threshold: true'));
      assert.equal(rules.domains.get('d')?.children.get('k_*')?.shareThreshold, true);
      const off = load(one('value: v', 'share_threshold: false'));
      assert.equal(off.domains.get('d')?.children.get('k_v')?.shareThreshold, false);
    });
    it('algorithm (extension): fixed_window or sliding_window', () => {
      fails(
        one('rate_limit: {unit: second, algorithm: Sliding_Window}'),
        "invalid rate limit algorithm 'Sliding_Window'",
      );
      fails(one('rate_limits: [{unit: second, algorithm: leaky}]'), "invalid rate limit algorithm 'leaky'");
    });
    it('rate_limits (extension): a unit each, no unlimited', () => {
      fails(one('rate_limits: [{unit: second}, {requests_per_unit: 3}]'), "invalid rate limit unit ''");
      fails(one('rate_limits: [{unit: hours}]'), "invalid rate limit unit 'hours'");
      fails(
        one('rate_limit: {unlimited: true}', 'rate_limits: [{unit: second}]'),
        'should not combine unlimited with rate_limits',
      );
      fails(
        one('rate_limits: [{unit: second, unlimited: true}]'),
        'should not combine unlimited with rate_limits',
      );
      fails(one('rate_limits: [{unlimited: true}]'), "invalid rate limit unit ''");
    });
  });
});
