import {
  parseAllDocuments,
  parseDocument,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  type Node as YamlNode,
} from 'yaml';
import { RulesError } from './errors.ts';

/** Rate limit units, as in the RLS v3 `RateLimitResponse.RateLimit.Unit` enum. */
export type Unit = 'SECOND' | 'MINUTE' | 'HOUR' | 'DAY' | 'WEEK' | 'MONTH' | 'YEAR';

/** Window length in seconds per unit (epoch-aligned fixed windows; MONTH is 30 days, YEAR 365). */
export const UNIT_SECONDS: Readonly<Record<Unit, number>> = {
  SECOND: 1,
  MINUTE: 60,
  HOUR: 3600,
  DAY: 86400,
  WEEK: 604800,
  MONTH: 2592000,
  YEAR: 31536000,
};

/** Counting algorithm of one limit: the reference's fixed window, or the sliding window counter. */
export type Algorithm = 'fixed_window' | 'sliding_window';

/** One counted limit: `requestsPerUnit` per `unit`, with its counter key tag. */
export interface LimitSpec {
  readonly requestsPerUnit: number;
  readonly unit: Unit;
  /** Returned in `current_limit.name`; '' when unnamed. */
  readonly name: string;
  readonly algorithm: Algorithm;
  /** '' for `rate_limit` (reference key layout); `_r<i>` for entry i of the `rate_limits` extension. */
  readonly keyTag: string;
}

/** The limit attached to a config node (or built from a request override). */
export interface Rule {
  /** Counted limits; empty when `unlimited`. The first is the reported one when none is exceeded. */
  readonly limits: readonly LimitSpec[];
  readonly unlimited: boolean;
  readonly shadowMode: boolean;
  readonly quotaMode: boolean;
  /** `rate_limit.name` ('' when unnamed): the target of other rules' `replaces`. */
  readonly name: string;
  readonly replaces: readonly string[];
  readonly detailedMetric: boolean;
  /** Stats key of the config path, e.g. `test-domain.key1_value1.subkey1`. */
  readonly statKey: string;
  /** `metadata` of the node, returned in dynamic metadata when enabled. */
  readonly metadata: Readonly<Record<string, unknown>> | undefined;
}

/** A node of a domain's descriptor tree. */
export interface RuleNode {
  /** `key` or `key_value`. */
  readonly id: string;
  readonly key: string;
  readonly rule: Rule | undefined;
  readonly children: ReadonlyMap<string, RuleNode>;
  /** Children whose value holds `*`, in config order, with their compiled pattern. */
  readonly wildcards: ReadonlyArray<{ readonly id: string; readonly segments: readonly string[] }>;
  readonly valueToMetric: boolean;
  readonly shareThreshold: boolean;
}

/** A loaded, frozen rule set: domain name to descriptor tree root. */
export interface RuleSet {
  readonly domains: ReadonlyMap<string, RuleNode>;
  /** Names of the files it was built from. */
  readonly files: readonly string[];
}

/** One file to load: its name (used as error prefix) and content. */
export interface RulesFile {
  readonly name: string;
  readonly content: string;
}

const VALID_KEYS = new Set([
  'domain',
  'key',
  'value',
  'descriptors',
  'rate_limit',
  'unit',
  'requests_per_unit',
  'unlimited',
  'shadow_mode',
  'quota_mode',
  'name',
  'replaces',
  'detailed_metric',
  'value_to_metric',
  'share_threshold',
  'metadata',
  // extensions of this project (README: several limits, algorithm per limit)
  'rate_limits',
  'algorithm',
]);

const UNITS: Readonly<Record<string, Unit>> = {
  SECOND: 'SECOND',
  MINUTE: 'MINUTE',
  HOUR: 'HOUR',
  DAY: 'DAY',
  WEEK: 'WEEK',
  MONTH: 'MONTH',
  YEAR: 'YEAR',
};

type Plain = string | number | boolean | null | Plain[] | PlainMap;
/**
 * How the keys of a map are read: `config` keys must be strings; the map right under `metadata`
 * decodes into the reference's `map[string]interface{}` (a scalar key keeps its source text, null is
 * ''); deeper maps are `map[interface{}]interface{}` turned into strings with `%v`.
 */
type KeyMode = 'config' | 'metadata' | 'free';
/** A YAML mapping with its keys in document order, keys already checked to be strings. */
interface PlainMap {
  readonly entries: Map<string, { node: YamlNode | null; value: Plain }>;
}

const YAML_TAG = 'tag:yaml.org,2002:';

/**
 * The tag and the value text yaml.v2 shows in a type error: the explicit tag (`!!str`, `!local`) or the
 * resolved one; for a scalar its source text, cut to 7 bytes and `...` when longer than 10 bytes.
 */
function typeErrorText(node: YamlNode, value: Plain): string {
  const explicit =
    node.tag === undefined
      ? ''
      : node.tag.startsWith(YAML_TAG)
        ? `!!${node.tag.slice(YAML_TAG.length)}`
        : node.tag;
  const resolved = Array.isArray(value)
    ? '!!seq'
    : typeof value === 'object'
      ? '!!map'
      : isScalar(node) && node.value instanceof Date
        ? '!!timestamp'
        : typeof value === 'number'
          ? Number.isInteger(value)
            ? '!!int'
            : '!!float'
          : typeof value === 'boolean'
            ? '!!bool'
            : '!!str';
  const tag = explicit || resolved;
  if (tag === '!!seq' || tag === '!!map') return tag;
  const text = isScalar(node) ? String(node.source) : goFormat(value);
  const bytes = Buffer.from(text);
  return `${tag} \`${bytes.length > 10 ? `${bytes.subarray(0, 7).toString()}...` : text}\``;
}

/** Formats a scalar like Go's `%v` would for the value yaml.v2 decodes. */
function goFormat(v: unknown): string {
  if (v === null || v === undefined) return '<nil>';
  if (Array.isArray(v)) return `[${v.map(goFormat).join(' ')}]`;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return v.toString();
  return 'map[...]';
}

/** The 1-based line where `node` starts (1 without a node: a key without a value). */
function lineOf(node: YamlNode | null, src: string): number {
  return src.slice(0, node?.range?.[0] ?? 0).split('\n').length;
}

/**
 * The message Go's yaml.v2 gives for the same syntax error (checked against yaml.v2 v2.4.0): scanner
 * errors name the 1-based line of the problem (no line on the first line), parser errors the line
 * before it.
 */
function yamlErrorText(err: {
  code: string;
  message: string;
  linePos?: [{ line: number }, ...unknown[]];
}): string {
  const line = err.linePos?.[0]?.line ?? 1;
  const first = (err.message.split('\n')[0] ?? err.message).replace(/ at line \d+, column \d+:?$/, '');
  const at = (n: number, msg: string): string =>
    n > 1 || (n === 1 && msg.startsWith('did not')) ? `yaml: line ${n}: ${msg}` : `yaml: ${msg}`;
  if (err.code === 'MISSING_CHAR' && first.startsWith('Missing closing'))
    return at(line, 'found unexpected end of stream');
  if (err.code === 'BLOCK_AS_IMPLICIT_KEY') return at(line, 'mapping values are not allowed in this context');
  if (err.code === 'TAB_AS_INDENT') return at(line, 'found a tab character that violates indentation');
  if (err.code === 'BAD_SCALAR_START' && first.includes('reserved character'))
    return at(line, 'found character that cannot start any token');
  if (err.code === 'BAD_SCALAR_START') return at(line - 1, 'did not find expected node content');
  if (err.code === 'BAD_DQ_ESCAPE') return at(line, 'found unknown escape character');
  if (first.startsWith('Flow sequence')) return at(line - 1, 'did not find expected node content');
  if (first.startsWith('Flow map')) return at(line - 1, "did not find expected ',' or '}'");
  if (first.startsWith('Sequence item without') || first.startsWith('All mapping items must start'))
    return at(line - 1, "did not find expected '-' indicator");
  return `yaml: line ${line}: ${first}`;
}

/**
 * Parses one file as yaml.v2 would (YAML 1.1) and checks every key like the reference's
 * validateYamlKeys: keys must be strings and known; list elements must be maps; leaves must be
 * strings, integers, booleans or null. `metadata` subtrees are free-form.
 */
function parseFile(file: RulesFile): PlainMap {
  // yaml.v2's Unmarshal reads the first document of a stream and ignores the rest.
  const options = { version: '1.1', uniqueKeys: false, prettyErrors: true } as const;
  const doc = parseAllDocuments(file.content, options)[0] ?? parseDocument('', options);
  const first = doc.errors[0];
  if (first) throw new RulesError(file.name, `error loading config file: ${yamlErrorText(first)}`);
  const fail = (msg: string): never => {
    throw new RulesError(file.name, msg);
  };
  const resolve = (n: unknown): unknown => {
    if (!isAlias(n)) return n;
    const target = n.resolve(doc);
    // yaml.v2 refuses an alias whose anchor is not defined before it; it is no null value.
    if (target === undefined)
      fail(`error loading config file: yaml: unknown anchor '${n.source}' referenced`);
    return target;
  };
  const convert = (raw: unknown, mode: KeyMode): Plain => {
    const n = resolve(raw);
    if (isScalar(n)) {
      const v = n.value;
      if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
      // timestamps and other YAML 1.1 types: keep the source text, as yaml.v2 does for string targets
      return n.source ?? '';
    }
    if (isSeq(n)) return n.items.map((i) => convert(i, mode === 'config' ? 'config' : 'free'));
    if (isMap(n)) {
      const entries = new Map<string, { node: YamlNode | null; value: Plain }>();
      for (const pair of n.items) {
        const k = resolve(pair.key);
        const kv = isScalar(k) ? k.value : k;
        let key: string;
        if (typeof kv === 'string') key = kv;
        else if (mode === 'config') key = fail(`config error, key is not of type string: ${goFormat(kv)}`);
        else if (k !== null && k !== undefined && !isScalar(k)) continue;
        else if (mode === 'metadata') key = isScalar(k) && kv !== null ? String(k.source) : '';
        else key = kv instanceof Date && isScalar(k) ? String(k.source) : goFormat(kv);
        if (mode === 'config' && !VALID_KEYS.has(key)) fail(`config error, unknown key '${key}'`);
        const valueNode = resolve(pair.value) as YamlNode | null;
        const childMode: KeyMode = mode !== 'config' ? 'free' : key === 'metadata' ? 'metadata' : 'config';
        const value = convert(valueNode, childMode);
        if (childMode === 'config') {
          if (Array.isArray(value)) {
            for (const e of value)
              if (e === null || typeof e !== 'object' || Array.isArray(e))
                fail(`config error, yaml file contains list of type other than map: ${goFormat(e)}`);
          } else if (typeof value === 'number' && !Number.isInteger(value)) {
            fail('error checking config');
          }
        }
        entries.set(key, { node: valueNode, value });
      }
      return { entries };
    }
    return null;
  };
  const root = convert(doc.contents, 'config');
  if (root === null) return { entries: new Map() };
  if (typeof root !== 'object' || Array.isArray(root))
    fail(
      `error loading config file: yaml: unmarshal errors:\n  line ${lineOf(doc.contents, file.content)}: cannot unmarshal ${typeErrorText(doc.contents as YamlNode, root)} into map[interface {}]interface {}`,
    );
  // Second pass: the typed decode (yaml.v2 into the reference's structs) and its type errors.
  checkTypes(file, root as PlainMap);
  return root as PlainMap;
}

type FieldType = 'string' | 'uint32' | 'bool' | 'map' | 'list' | 'metadata';
const FIELD_TYPES: Readonly<Record<string, FieldType>> = {
  domain: 'string',
  key: 'string',
  value: 'string',
  unit: 'string',
  name: 'string',
  algorithm: 'string',
  requests_per_unit: 'uint32',
  unlimited: 'bool',
  shadow_mode: 'bool',
  quota_mode: 'bool',
  detailed_metric: 'bool',
  value_to_metric: 'bool',
  share_threshold: 'bool',
  rate_limit: 'map',
  metadata: 'metadata',
  descriptors: 'list',
  replaces: 'list',
  rate_limits: 'list',
};

function checkTypes(file: RulesFile, root: PlainMap): void {
  const errors: string[] = [];
  const visit = (m: PlainMap): void => {
    for (const [key, { node, value }] of m.entries) {
      const t = FIELD_TYPES[key] as FieldType; // every valid key has a type
      const line = lineOf(node, file.content);
      const bad = (goType: string): void => {
        errors.push(
          `  line ${line}: cannot unmarshal ${typeErrorText(node as YamlNode, value)} into ${goType}`,
        );
      };
      if (value === null) continue;
      switch (t) {
        case 'string':
          if (typeof value === 'object') bad('string');
          break;
        case 'uint32':
          // floats were refused before (error checking config)
          if (typeof value !== 'number' || value < 0 || value > 4294967295) bad('uint32');
          break;
        case 'bool':
          if (typeof value !== 'boolean') bad('bool');
          break;
        case 'map':
          if (typeof value !== 'object' || Array.isArray(value)) bad('config.YamlRateLimit');
          else visit(value);
          break;
        case 'metadata':
          if (typeof value !== 'object' || Array.isArray(value)) bad('map[string]interface {}');
          break;
        case 'list':
          if (!Array.isArray(value))
            bad(key === 'replaces' ? '[]config.yamlReplaces' : '[]config.YamlDescriptor');
          // parseFile has refused any element that is not a map
          else for (const e of value) visit(e as PlainMap);
          break;
      }
    }
  };
  visit(root);
  if (errors.length > 0)
    throw new RulesError(
      file.name,
      `error loading config file: yaml: unmarshal errors:\n${errors.join('\n')}`,
    );
}

/** Reads a scalar field as yaml.v2 decodes it into a Go string: scalars keep their source text. */
function str(m: PlainMap, key: string): string {
  const e = m.entries.get(key);
  if (e === undefined || e.value === null) return '';
  // checkTypes has refused collections here; a non-string scalar keeps its source text
  return isScalar(e.node) && typeof e.node.value !== 'string' ? String(e.node.source) : (e.value as string);
}
function bool(m: PlainMap, key: string): boolean {
  return m.entries.get(key)?.value === true;
}
function uint(m: PlainMap, key: string): number {
  const v = m.entries.get(key)?.value;
  return typeof v === 'number' ? v : 0;
}
// sub and list read fields that checkTypes has checked (a map or null; a list of maps or null).
function sub(m: PlainMap, key: string): PlainMap | undefined {
  return (m.entries.get(key)?.value ?? undefined) as PlainMap | undefined;
}
function list(m: PlainMap, key: string): PlainMap[] {
  return (m.entries.get(key)?.value ?? []) as PlainMap[];
}
function toJs(v: Plain): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(toJs);
  return Object.fromEntries([...v.entries].map(([k, e]) => [k, toJs(e.value)]));
}

/** Splits a wildcard value on `*`: every `*` matches zero or more characters. */
export function compileWildcard(id: string): string[] {
  return id.split('*');
}

/** True when `text` matches the `*`-split pattern: literal segments in order, first as prefix, last as suffix. */
export function wildcardMatch(segments: readonly string[], text: string): boolean {
  if (segments.length === 1) return segments[0] === text;
  const first = segments[0] as string;
  const last = segments[segments.length - 1] as string;
  if (!text.startsWith(first)) return false;
  if (!text.endsWith(last)) return false;
  let pos = first.length;
  const end = text.length - last.length;
  for (let i = 1; i < segments.length - 1; i++) {
    const seg = segments[i] as string;
    const at = text.indexOf(seg, pos);
    if (at === -1) return false;
    pos = at + seg.length;
  }
  // prefix, middle segments and suffix may not overlap
  return pos <= end;
}

interface MutableNode {
  id: string;
  key: string;
  rule: Rule | undefined;
  children: Map<string, MutableNode>;
  wildcards: Array<{ id: string; segments: string[] }>;
  valueToMetric: boolean;
  shareThreshold: boolean;
}

const newNode = (id: string, key: string): MutableNode => ({
  id,
  key,
  rule: undefined,
  children: new Map(),
  wildcards: [],
  valueToMetric: false,
  shareThreshold: false,
});

function parseUnit(raw: string): Unit | undefined {
  return UNITS[raw.toUpperCase()];
}

function parseAlgorithm(file: string, raw: string): Algorithm {
  if (raw === '' || raw === 'fixed_window') return 'fixed_window';
  if (raw === 'sliding_window') return 'sliding_window';
  throw new RulesError(file, `invalid rate limit algorithm '${raw}'`);
}

function loadDescriptors(
  file: string,
  parent: MutableNode,
  parentKey: string,
  descriptors: PlainMap[],
): void {
  for (const d of descriptors) {
    const key = str(d, 'key');
    if (key === '') throw new RulesError(file, 'descriptor has empty key');
    const value = str(d, 'value');
    const id = value === '' ? key : `${key}_${value}`;
    const path = parentKey + id;
    if (parent.children.has(id)) throw new RulesError(file, `duplicate descriptor composite key '${path}'`);
    let rule: Rule | undefined;
    const rl = sub(d, 'rate_limit');
    const extra = list(d, 'rate_limits');
    const shadowMode = bool(d, 'shadow_mode');
    if (rl || extra.length > 0) {
      const limits: LimitSpec[] = [];
      let unlimited = false;
      let name = '';
      let replaces: string[] = [];
      if (rl) {
        unlimited = bool(rl, 'unlimited');
        const unitRaw = str(rl, 'unit');
        const unit = parseUnit(unitRaw);
        if (unlimited) {
          if (unit) throw new RulesError(file, 'should not specify rate limit unit when unlimited');
        } else if (!unit) throw new RulesError(file, `invalid rate limit unit '${unitRaw}'`);
        name = str(rl, 'name');
        replaces = list(rl, 'replaces').map((r) => str(r, 'name'));
        // unlimited has thrown on a unit: only a counted limit has one
        if (unit)
          limits.push({
            requestsPerUnit: uint(rl, 'requests_per_unit'),
            unit,
            name,
            algorithm: parseAlgorithm(file, str(rl, 'algorithm')),
            keyTag: '',
          });
        for (const r of replaces) {
          if (r === '') throw new RulesError(file, 'should not have an empty replaces entry');
          if (r === name) throw new RulesError(file, 'replaces should not contain name of same descriptor');
        }
      }
      if (unlimited && extra.length > 0)
        throw new RulesError(file, 'should not combine unlimited with rate_limits');
      extra.forEach((e, i) => {
        const unitRaw = str(e, 'unit');
        const unit = parseUnit(unitRaw);
        if (!unit) throw new RulesError(file, `invalid rate limit unit '${unitRaw}'`);
        if (bool(e, 'unlimited')) throw new RulesError(file, 'should not combine unlimited with rate_limits');
        limits.push({
          requestsPerUnit: uint(e, 'requests_per_unit'),
          unit,
          name: str(e, 'name') || name,
          algorithm: parseAlgorithm(file, str(e, 'algorithm')),
          keyTag: `_r${i}`,
        });
      });
      // the reference keeps nil for an empty map
      const metadata = sub(d, 'metadata');
      rule = {
        limits,
        unlimited,
        shadowMode,
        quotaMode: bool(d, 'quota_mode'),
        name,
        replaces,
        detailedMetric: bool(d, 'detailed_metric'),
        statKey: path,
        metadata:
          metadata && metadata.entries.size > 0 ? (toJs(metadata) as Record<string, unknown>) : undefined,
      };
    }
    const shareThreshold = bool(d, 'share_threshold');
    if (shareThreshold && !id.includes('*'))
      throw new RulesError(
        file,
        `share_threshold can only be used with wildcard values (containing '*'), but found key '${id}'`,
      );
    const node = newNode(id, key);
    node.rule = rule;
    node.valueToMetric = bool(d, 'value_to_metric');
    node.shareThreshold = shareThreshold;
    loadDescriptors(file, node, path + '.', list(d, 'descriptors'));
    parent.children.set(id, node);
    if (id.includes('*')) parent.wildcards.push({ id, segments: compileWildcard(id) });
  }
}

function freeze(n: MutableNode): RuleNode {
  for (const c of n.children.values()) freeze(c);
  Object.freeze(n.wildcards);
  for (const w of n.wildcards) Object.freeze(w);
  if (n.rule) {
    Object.freeze(n.rule.limits);
    for (const l of n.rule.limits) Object.freeze(l);
    Object.freeze(n.rule);
  }
  return Object.freeze(n);
}

/**
 * Builds a rule set from files, with the reference's checks and messages (first problem wins,
 * as the reference stops at its first panic). Throws RulesError.
 */
export function buildRuleSet(files: readonly RulesFile[], opts: { mergeDomains: boolean }): RuleSet {
  const parsed = files.map((f) => ({ file: f, root: parseFile(f) }));
  const domains = new Map<string, MutableNode>();
  for (const { file, root } of parsed) {
    const domain = str(root, 'domain');
    if (domain === '') throw new RulesError(file.name, 'config file cannot have empty domain');
    let node = domains.get(domain);
    if (node && !opts.mergeDomains)
      throw new RulesError(file.name, `duplicate domain '${domain}' in config file`);
    if (!node) {
      node = newNode(domain, domain);
      domains.set(domain, node);
    }
    loadDescriptors(file.name, node, domain + '.', list(root, 'descriptors'));
  }
  const frozen = new Map<string, RuleNode>();
  for (const [k, v] of domains) frozen.set(k, freeze(v));
  return Object.freeze({ domains: frozen, files: Object.freeze(files.map((f) => f.name)) });
}

/** One entry of a request descriptor. */
export interface Entry {
  readonly key: string;
  readonly value: string;
}

/** A request-supplied limit (`RateLimitDescriptor.limit`). */
export interface Override {
  readonly requestsPerUnit: number;
  readonly unit: Unit;
}

/** Result of matching one descriptor: the rule, its stats key and counter-key values. */
export interface Match {
  readonly rule: Rule;
  /** Stats key: config path, or detailed / value_to_metric variants, or the override key. */
  readonly statKey: string;
  /** Per entry, the value used in the counter key (the request value, or the pattern with share_threshold). */
  readonly keyValues: readonly string[];
  /** True when the rule comes from a request override. */
  readonly override: boolean;
}

/** Stats key of an override or of detailed metrics: `domain.k_v.k2_v2` (`k` alone when the value is empty). */
function overrideStatKey(domain: string, entries: readonly Entry[]): string {
  return domain + '.' + entries.map((e) => (e.value === '' ? e.key : `${e.key}_${e.value}`)).join('.');
}

/**
 * Finds the rule of one request descriptor, as the reference's GetLimit: the override when the
 * domain exists; else walk the tree matching exact `key_value`, then the first wildcard in config
 * order, then key-only; only a node at the request's depth supplies the limit; no backtracking.
 */
export function matchDescriptor(
  rules: RuleSet,
  domain: string,
  entries: readonly Entry[],
  override: Override | undefined,
): Match | 'domain_not_found' | undefined {
  const root = rules.domains.get(domain);
  if (!root) return 'domain_not_found';
  if (override) {
    return {
      rule: {
        limits: [
          {
            requestsPerUnit: override.requestsPerUnit,
            unit: override.unit,
            name: '',
            algorithm: 'fixed_window',
            keyTag: '',
          },
        ],
        unlimited: false,
        shadowMode: false,
        quotaMode: false,
        name: '',
        replaces: [],
        detailedMetric: false,
        statKey: overrideStatKey(domain, entries),
        metadata: undefined,
      },
      statKey: overrideStatKey(domain, entries),
      keyValues: entries.map((e) => e.value),
      override: true,
    };
  }
  let node: RuleNode = root;
  let result: Rule | undefined;
  const keyValues = entries.map((e) => e.value);
  const metricParts: string[] = [domain];
  let shared = false;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as Entry;
    const full = `${e.key}_${e.value}`;
    let next = node.children.get(full);
    let how: 'exact' | 'wildcard' | 'default' = 'exact';
    let pattern = '';
    if (!next) {
      for (const w of node.wildcards) {
        if (wildcardMatch(w.segments, full)) {
          next = node.children.get(w.id);
          how = 'wildcard';
          pattern = w.id.slice(e.key.length + 1);
          break;
        }
      }
    }
    if (!next) {
      next = node.children.get(e.key);
      how = 'default';
    }
    if (next) {
      const withValue = e.value === '' ? e.key : full;
      if (how === 'wildcard') {
        if (next.shareThreshold) {
          keyValues[i] = pattern;
          shared = true;
          metricParts.push(`${e.key}_${pattern}`);
        } else metricParts.push(next.valueToMetric ? withValue : `${e.key}_${pattern}`);
      } else if (how === 'exact') metricParts.push(withValue);
      else metricParts.push(next.valueToMetric ? withValue : e.key);
      if (next.rule && i === entries.length - 1) result = next.rule;
    }
    if (next && next.children.size > 0) node = next;
    else break;
  }
  if (!result) return undefined;
  let statKey = metricParts.join('.');
  if (result.detailedMetric) {
    // As the reference: `k_v` per entry, even for an empty value, unless a share_threshold pattern
    // stands in for some entry; then an entry with an empty value is `k`.
    statKey =
      domain +
      '.' +
      entries
        .map((e, i) => {
          const v = keyValues[i] ?? e.value;
          return shared && v === '' ? e.key : `${e.key}_${v}`;
        })
        .join('.');
  }
  return { rule: result, statKey, keyValues, override: false };
}

/** A human-readable dump of a rule set, one line per limit (admin view and check-config). */
export function dumpRuleSet(rules: RuleSet): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  const visit = (n: RuleNode): void => {
    if (n.rule)
      out.push({
        key: n.rule.statKey,
        unlimited: n.rule.unlimited,
        shadow_mode: n.rule.shadowMode,
        quota_mode: n.rule.quotaMode,
        ...(n.rule.name ? { name: n.rule.name } : {}),
        ...(n.rule.replaces.length ? { replaces: n.rule.replaces } : {}),
        limits: n.rule.limits.map((l) => ({
          requests_per_unit: l.requestsPerUnit,
          unit: l.unit,
          algorithm: l.algorithm,
          ...(l.name ? { name: l.name } : {}),
        })),
      });
    for (const c of n.children.values()) visit(c);
  };
  for (const d of rules.domains.values()) visit(d);
  return out;
}
