import { beforeEach, describe, it } from 'mocha';
import assert from 'node:assert/strict';
import {
  assemble,
  counterKey,
  plan,
  type CoreRequest,
  type CoreSettings,
  type CounterResult,
} from '../src/limiter.ts';
import { MemoryStore } from '../src/counter-store.ts';
import { ServiceError } from '../src/errors.ts';
import type { RuleSet } from '../src/rules.ts';
import { goodRules, settings } from './helpers.ts';

// Built per test, not while the file loads: rules.ts code run at load makes each of its mutants restart
// Stryker's worker (issue 13).
const buildRules = (): RuleSet =>
  goodRules(['basic_config.yaml', 'replaces.yaml', 'modes.yaml', 'wildcard.yaml']);
let rules: RuleSet;
const req = (domain: string, ...descs: Array<Array<[string, string]>>): CoreRequest => ({
  domain,
  hitsAddend: 0,
  descriptors: descs.map((d) => ({ entries: d.map(([key, value]) => ({ key, value })) })),
});

/** Runs plan + memory store + assemble at a fixed clock. */
async function decide(
  store: MemoryStore,
  r: CoreRequest,
  nowMs: number,
  s: CoreSettings = settings(),
  rs: RuleSet = rules,
) {
  const p = plan(r, rs, s, nowMs, () => 0);
  const counts = await store.apply(p.ops);
  const results: CounterResult[] = counts.map((after) => ({ kind: 'count', after }));
  return { plan: p, resp: assemble(p, results, s) };
}

describe('ratelimit/limiter', () => {
  beforeEach(() => {
    rules = buildRules();
  });
  let clock = 1_000_000_000;
  const store = (): MemoryStore => new MemoryStore({ now: () => clock, sweepMs: 60_000 });

  it('rejects empty domain, empty descriptors and missing config with the reference messages', () => {
    assert.throws(
      () => plan(req(''), rules, settings(), 0, Math.random),
      new ServiceError('ERR_EMPTY_DOMAIN', 'rate limit domain must not be empty'),
    );
    assert.throws(() => plan(req('d'), rules, settings(), 0, Math.random), {
      message: 'rate limit descriptor list must not be empty',
    });
    assert.throws(() => plan(req('d', [['k', 'v']]), undefined, settings(), 0, Math.random), {
      message: 'no rate limit configuration loaded',
    });
  });

  it('builds reference cache keys', () => {
    const e = [{ key: 'key', value: 'value' }];
    assert.equal(counterKey('', 'domain', e, ['value'], '', 1234), 'domain_key_value_1234');
    assert.equal(counterKey('prefix:', 'domain', e, ['value'], '', 1234), 'prefix:domain_key_value_1234');
    const e2 = [
      { key: 'key2', value: 'value2' },
      { key: 'subkey2', value: 'subvalue2' },
    ];
    assert.equal(
      counterKey('', 'domain', e2, ['value2', 'subvalue2'], '', 1200),
      'domain_key2_value2_subkey2_subvalue2_1200',
    );
    const p = plan(req('wildcard', [['files', 'files/a']]), rules, settings(), 1234_000, () => 0);
    assert.equal(p.ops[0]?.key, 'wildcard_files_files/*_1234');
    const h = plan(req('test-domain', [['key3', 'value3']]), rules, settings(), 1_000_000_000, () => 0);
    assert.equal(h.ops[0]?.key, 'test-domain_key3_value3_997200');
    assert.equal(h.ops[0]?.ttlSeconds, 3600);
  });

  it('counts to the limit: the Nth of N is OK with 0 remaining, then OVER_LIMIT', async () => {
    const s = store();
    const r = req('test-domain', [['key2', 'value2']]);
    clock = 60_000 * 1000 + 2000; // 2s into a minute
    for (let i = 1; i <= 30; i++) {
      const { resp } = await decide(s, r, clock);
      assert.equal(resp.overallCode, 'OK');
      assert.equal(resp.statuses[0]?.limitRemaining, 30 - i);
      assert.equal(resp.statuses[0]?.durationUntilReset, 58);
      assert.deepEqual(resp.statuses[0]?.currentLimit, { name: '', requestsPerUnit: 30, unit: 'MINUTE' });
    }
    const { resp } = await decide(s, r, clock);
    assert.equal(resp.overallCode, 'OVER_LIMIT');
    assert.equal(resp.statuses[0]?.code, 'OVER_LIMIT');
    assert.equal(resp.statuses[0]?.limitRemaining, 0);
    assert.equal(resp.newlyOver.length, 1);
    // the next window starts from zero
    clock += 60_000;
    assert.equal((await decide(s, r, clock)).resp.overallCode, 'OK');
  });

  it('unmatched, whitelisted, unlimited and blocked descriptors', async () => {
    const s = store();
    const { resp, plan: p } = await decide(
      s,
      req('test-domain', [['nothing', 'x']], [['key2', 'value3']], [['key6', 'x']], [['blocked', 'x']]),
      clock,
    );
    assert.equal(p.ops.length, 1);
    assert.deepEqual(resp.statuses[0], {
      code: 'OK',
      currentLimit: undefined,
      limitRemaining: 0,
      durationUntilReset: undefined,
    });
    assert.deepEqual(resp.statuses[1], {
      code: 'OK',
      currentLimit: undefined,
      limitRemaining: 0,
      durationUntilReset: undefined,
    });
    assert.deepEqual(resp.statuses[2], {
      code: 'OK',
      currentLimit: undefined,
      limitRemaining: 4294967295,
      durationUntilReset: undefined,
    });
    assert.equal(resp.statuses[3]?.code, 'OVER_LIMIT');
    assert.equal(resp.overallCode, 'OVER_LIMIT');
  });

  it('unknown domain is OK for every descriptor', async () => {
    const { resp, plan: p } = await decide(store(), req('nope', [['a', 'b']]), clock);
    assert.equal(p.domainNotFound, true);
    assert.equal(resp.overallCode, 'OK');
  });

  it('replaces drops the named limit across descriptors (unlimited rules replace too)', async () => {
    const s = store();
    const a = await decide(s, req('replaces', [['key1', 'x']], [['key2', 'y']]), clock);
    assert.equal(a.plan.ops.length, 1);
    assert.equal(a.resp.statuses[0]?.currentLimit, undefined);
    assert.equal(a.resp.statuses[1]?.currentLimit?.requestsPerUnit, 100);
    const b = await decide(s, req('replaces', [['key1', 'x']], [['key3', 'y']]), clock);
    assert.equal(b.plan.ops.length, 0);
    const c = await decide(s, req('replaces', [['key1', 'x']]), clock);
    assert.equal(c.resp.statuses[0]?.currentLimit?.name, 'key1-limit');
  });

  it('rule shadow_mode: counted, reported OK with the limit and 0 remaining', async () => {
    const s = store();
    await decide(s, req('modes', [['shadow', 'x']]), clock);
    const { resp } = await decide(s, req('modes', [['shadow', 'x']]), clock);
    assert.equal(resp.overallCode, 'OK');
    assert.equal(resp.statuses[0]?.code, 'OK');
    assert.equal(resp.statuses[0]?.limitRemaining, 0);
    assert.ok(resp.statuses[0]?.currentLimit);
    assert.ok(resp.statuses[0]?.durationUntilReset);
    assert.equal(resp.stats[0]?.shadowMode, 1);
  });

  it('global SHADOW_MODE keeps OVER_LIMIT statuses but answers OK', async () => {
    const s = store();
    const st = settings({ globalShadowMode: true });
    await decide(s, req('modes', [['regular', 'x']]), clock, st);
    const { resp } = await decide(s, req('modes', [['regular', 'x']]), clock, st);
    assert.equal(resp.statuses[0]?.code, 'OVER_LIMIT');
    assert.equal(resp.overallCode, 'OK');
    assert.equal(resp.globalShadowApplied, true);
  });

  it('quota mode: OVER only when every quota descriptor is over, or a regular one is', async () => {
    const s = store();
    await decide(s, req('modes', [['quota', 'x']]), clock);
    // quota over, quota2 fresh: OK
    let r = await decide(s, req('modes', [['quota', 'x']], [['quota2', 'x']]), clock);
    assert.equal(r.resp.statuses[0]?.code, 'OVER_LIMIT');
    assert.equal(r.resp.overallCode, 'OK');
    // both quota over: OVER
    r = await decide(s, req('modes', [['quota', 'x']], [['quota2', 'x']]), clock);
    assert.equal(r.resp.overallCode, 'OVER_LIMIT');
    // a regular OK plus the only quota descriptor over: OVER (TestServiceMixedPerDescriptorModes)
    r = await decide(s, req('modes', [['regular', 'new']], [['quota', 'x']]), clock);
    assert.equal(r.resp.overallCode, 'OVER_LIMIT');
    // QUOTA_MODE global
    const q = settings({ globalQuotaMode: true });
    r = await decide(s, req('modes', [['regular', 'new']], [['regular', 'fresh']]), clock, q);
    assert.equal(r.resp.statuses[0]?.code, 'OVER_LIMIT');
    assert.equal(r.resp.overallCode, 'OK');
  });

  it('hits_addend: request level (0 means 1), per descriptor (0 checks only), no partial admission', async () => {
    const s = store();
    const r: CoreRequest = {
      domain: 'test-domain',
      hitsAddend: 5,
      descriptors: [
        { entries: [{ key: 'key2', value: 'h1' }] },
        { entries: [{ key: 'key2', value: 'h2' }], hitsAddend: 0 },
        { entries: [{ key: 'key2', value: 'h3' }], hitsAddend: 25 },
      ],
    };
    const { resp } = await decide(s, r, clock);
    assert.deepEqual(
      resp.statuses.map((x) => x.limitRemaining),
      [15, 20, 0],
    );
    assert.equal(resp.statuses[2]?.code, 'OVER_LIMIT');
    assert.equal(resp.stats[0]?.totalHits, 5);
    const again = await decide(
      s,
      { ...r, hitsAddend: 0, descriptors: [{ entries: [{ key: 'key2', value: 'h1' }] }] },
      clock,
    );
    assert.equal(again.resp.statuses[0]?.limitRemaining, 14);
  });

  it('near/over/within stats split like the reference', async () => {
    const s = store();
    const r = (addend: number): CoreRequest => ({
      domain: 'test-domain',
      hitsAddend: addend,
      descriptors: [{ entries: [{ key: 'key2', value: 'near' }] }],
    });
    // limit 20, near threshold 16
    let x = await decide(s, r(15), clock);
    assert.deepEqual(
      [x.resp.stats[0]?.withinLimit, x.resp.stats[0]?.nearLimit, x.resp.stats[0]?.overLimit],
      [15, 0, 0],
    );
    x = await decide(s, r(3), clock); // 18: 2 near
    assert.deepEqual(
      [x.resp.stats[0]?.withinLimit, x.resp.stats[0]?.nearLimit, x.resp.stats[0]?.overLimit],
      [3, 2, 0],
    );
    x = await decide(s, r(4), clock); // 22: 2 over, 2 near
    assert.deepEqual([x.resp.stats[0]?.nearLimit, x.resp.stats[0]?.overLimit], [2, 2]);
    x = await decide(s, r(2), clock);
    assert.deepEqual([x.resp.stats[0]?.nearLimit, x.resp.stats[0]?.overLimit], [0, 2]);
  });

  it('response headers: reference example (clock 2222, MINUTE 10 over: 10 / 0 / 58) and custom names', async () => {
    const s = store();
    const st = settings({ responseHeaders: { enabled: true, limit: 'X-L', remaining: 'X-R', reset: 'X-S' } });
    const r = req('modes', [['detailed', 'h']]);
    for (let i = 0; i < 10; i++) await decide(s, r, 2222_000, st);
    const { resp } = await decide(s, r, 2222_000, st);
    assert.deepEqual(resp.responseHeaders, [
      { key: 'X-L', value: '10' },
      { key: 'X-R', value: '0' },
      { key: 'X-S', value: '58' },
    ]);
    const none = await decide(s, req('modes', [['nothing', 'x']]), 2222_000, st);
    assert.deepEqual(none.resp.responseHeaders, []);
  });

  it('headers come from the smallest remaining, or from an over-limit status', async () => {
    const s = store();
    const st = settings({ responseHeaders: { enabled: true, limit: 'L', remaining: 'R', reset: 'S' } });
    const { resp } = await decide(s, req('test-domain', [['key2', 'hx']], [['key3', 'hx']]), 2222_000, st);
    assert.equal(resp.responseHeaders[0]?.value, '1');
    assert.equal(resp.responseHeaders[1]?.value, '0');
  });

  it('dynamic metadata: request summary and metadata of passing descriptors', async () => {
    const s = store();
    const st = settings({ dynamicMetadata: true });
    const r: CoreRequest = {
      domain: 'modes',
      hitsAddend: 2,
      descriptors: [
        { entries: [{ key: 'meta', value: 'x' }] },
        {
          entries: [{ key: 'a', value: 'b' }],
          override: { requestsPerUnit: 5, unit: 'MINUTE' },
          hitsAddend: 1,
        },
      ],
    };
    const { resp } = await decide(s, r, clock, st);
    assert.deepEqual(resp.dynamicMetadata, {
      domain: 'modes',
      descriptors: [
        { entries: ['meta=x'] },
        { entries: ['a=b'], limit: 'requests_per_unit:5 unit:MINUTE', hitsAddend: 1 },
      ],
      hitsAddend: 2,
      metadata: { team: 'payments', nested: { a: 1 } },
    });
  });

  it('overrides use the request limit, never shadow, no name', async () => {
    const s = store();
    const r: CoreRequest = {
      domain: 'modes',
      hitsAddend: 0,
      descriptors: [
        { entries: [{ key: 'shadow', value: 'o' }], override: { requestsPerUnit: 1, unit: 'HOUR' } },
      ],
    };
    await decide(s, r, clock);
    const { resp } = await decide(s, r, clock);
    assert.equal(resp.statuses[0]?.code, 'OVER_LIMIT');
    assert.deepEqual(resp.statuses[0]?.currentLimit, { name: '', requestsPerUnit: 1, unit: 'HOUR' });
  });

  it('several limits on one descriptor: burst per second and sustained per minute', async () => {
    const s = store();
    const base = 3_000_000_000_000; // a minute boundary (divisible by 60 000)
    const r = req('modes', [['multi', 'u']]);
    const codes: string[] = [];
    for (const t of [0, 0, 0, 1000, 2000, 3000])
      codes.push((await decide(s, r, base + t)).resp.statuses[0]?.code ?? '');
    // 2/s burst: third at t=0 over; then the per-minute 3 is exhausted by t=1000 (counting all hits)
    assert.deepEqual(codes, ['OK', 'OK', 'OVER_LIMIT', 'OVER_LIMIT', 'OVER_LIMIT', 'OVER_LIMIT']);
    const p = plan(r, rules, settings(), base, () => 0);
    assert.deepEqual(
      p.ops.map((o) => o.key),
      [`modes_multi_u_${base / 1000}`, `modes_multi_u_r0_${base / 1000}`],
    );
    const first = await decide(store(), r, base);
    assert.equal(first.resp.statuses[0]?.currentLimit?.name, 'burst');
  });

  it('sliding window: the previous window weighs in, rejected hits are not counted', async () => {
    const s = store();
    const r = req('modes', [['smooth', 'u']]);
    const base = 3_000_000_000_000;
    // 10 hits at the end of window 0
    for (let i = 0; i < 10; i++)
      assert.equal((await decide(s, r, base + 59_000)).resp.statuses[0]?.code, 'OK');
    assert.equal((await decide(s, r, base + 59_500)).resp.statuses[0]?.code, 'OVER_LIMIT');
    // 15 s into window 1: 75% of the 10 previous hits still count -> 7 used, 3 left
    const codes: string[] = [];
    for (let i = 0; i < 4; i++) codes.push((await decide(s, r, base + 75_000)).resp.statuses[0]?.code ?? '');
    assert.deepEqual(codes, ['OK', 'OK', 'OK', 'OVER_LIMIT']);
    // 45 s in: 25% of 10 = 2 (floor) + 3 current = 5 used
    assert.equal((await decide(s, r, base + 105_000)).resp.statuses[0]?.limitRemaining, 4);
  });

  it('over-limit results are reported for the local cache until the window end', async () => {
    const s = store();
    const r = req('test-domain', [['key3', 'lc']]);
    await decide(s, r, 3_600_000_000);
    const { resp } = await decide(s, r, 3_600_000_000 + 5000);
    assert.deepEqual(resp.newlyOver, [{ key: 'test-domain_key3_lc_3600000', windowEndMs: 3_603_600_000 }]);
    const p = plan(r, rules, settings(), 3_600_010_000, () => 0);
    const local = assemble(p, [{ kind: 'local_over' }], settings());
    assert.equal(local.statuses[0]?.code, 'OVER_LIMIT');
    assert.equal(local.stats[0]?.overLimitWithLocalCache, 1);
    assert.equal(local.stats[0]?.overLimit, 1);
  });
});

describe('ratelimit/limiter request bounds', () => {
  beforeEach(() => {
    rules = buildRules();
  });
  const limits = { maxDescriptors: 2, maxEntries: 2, maxValueLength: 8, maxHitsAddend: 100 };
  const refused = (r: CoreRequest): void =>
    assert.throws(
      () => plan(r, rules, settings({ requestLimits: limits }), 0, () => 0),
      (err: unknown) => err instanceof ServiceError && err.code === 'ERR_INVALID_REQUEST',
    );

  it('refuses requests past a bound before anything is planned', () => {
    refused(req('basic', [['key1', 'a']], [['key1', 'b']], [['key1', 'c']]));
    refused(
      req('basic', [
        ['a', '1'],
        ['b', '2'],
        ['c', '3'],
      ]),
    );
    refused(req('basic', [['key1', 'x'.repeat(9)]]));
    refused(req('basic', [['k'.repeat(9), 'x']]));
    refused(req('d'.repeat(9), [['key1', 'x']]));
    refused({ ...req('basic', [['key1', 'x']]), hitsAddend: 101 });
    refused({
      domain: 'basic',
      hitsAddend: 0,
      descriptors: [{ entries: [{ key: 'key1', value: 'x' }], hitsAddend: 2 ** 60 }],
    });
  });

  it('accepts requests at the bounds', () => {
    const p = plan(
      { ...req('basic', [['key1', 'x'.repeat(8)]], [['key1', 'y']]), hitsAddend: 100 },
      rules,
      settings({ requestLimits: limits }),
      0,
      () => 0,
    );
    assert.equal(p.descriptors.length, 2);
  });

  it('applies default bounds when none are set', () => {
    assert.throws(
      () =>
        plan(
          {
            domain: 'basic',
            hitsAddend: 0,
            descriptors: [{ entries: [{ key: 'key1', value: 'x' }], hitsAddend: 2 ** 53 + 2 }],
          },
          rules,
          settings(),
          0,
          () => 0,
        ),
      (err: unknown) => err instanceof ServiceError && err.code === 'ERR_INVALID_REQUEST',
    );
  });
});
