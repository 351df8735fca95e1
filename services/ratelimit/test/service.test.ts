import { beforeEach, describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { createLogger } from '@extsvc/common/logger';
import { MemoryStore, OverLimitCache, type CounterStore } from '../src/counter-store.ts';
import { StoreError } from '../src/errors.ts';
import type { CoreRequest, CounterOp } from '../src/limiter.ts';
import { Metrics } from '../src/metrics.ts';
import type { RuleSet } from '../src/rules.ts';
import { RateLimitService } from '../src/service.ts';
import { goodRules, settings } from './helpers.ts';

// Built per test, not while the file loads: rules.ts code run at load makes each of its mutants restart
// Stryker's worker (issue 13).
const buildRules = (): RuleSet => goodRules(['basic_config.yaml', 'modes.yaml']);
let rules: RuleSet;
const logger = createLogger({ service: 'test', level: 'silent' });
const req = (domain: string, key: string, value: string): CoreRequest => ({
  domain,
  hitsAddend: 0,
  descriptors: [{ entries: [{ key, value }] }],
});

class CountingStore implements CounterStore {
  readonly kind = 'counting';
  calls = 0;
  fail: StoreError | undefined;
  readonly inner: MemoryStore;
  constructor(now: () => number) {
    this.inner = new MemoryStore({ now });
  }
  async apply(ops: readonly CounterOp[]): Promise<number[]> {
    this.calls++;
    if (this.fail) throw this.fail;
    return this.inner.apply(ops);
  }
  peek(keys: readonly string[]): Promise<number[]> {
    return this.inner.peek(keys);
  }
  ready(): boolean {
    return true;
  }
  onReadyChange(): void {}
  async close(): Promise<void> {
    await this.inner.close();
  }
}

function make(opts: { failOpen?: boolean; cache?: number; stop?: boolean } = {}) {
  let now = 7_200_000_000;
  const store = new CountingStore(() => now);
  const registry = new Registry();
  const metrics = new Metrics(registry, 3);
  const svc = new RateLimitService({
    rules: () => rules,
    settings: settings({ stopIncrementWhenOverLimit: opts.stop ?? false }),
    store,
    localCache: new OverLimitCache(opts.cache ?? 100),
    metrics,
    logger,
    failOpen: opts.failOpen ?? false,
    now: () => now,
    random: () => 0,
  });
  return { svc, store, registry, advance: (ms: number) => (now += ms) };
}

describe('ratelimit/service', () => {
  beforeEach(() => {
    rules = buildRules();
  });
  it('answers from the local over-limit cache without calling the store until the window ends', async () => {
    const { svc, store, registry, advance } = make();
    await svc.shouldRateLimit(req('test-domain', 'key3', 'a'));
    assert.equal((await svc.shouldRateLimit(req('test-domain', 'key3', 'a'))).overallCode, 'OVER_LIMIT');
    assert.equal(store.calls, 2);
    for (let i = 0; i < 5; i++)
      assert.equal((await svc.shouldRateLimit(req('test-domain', 'key3', 'a'))).overallCode, 'OVER_LIMIT');
    assert.equal(store.calls, 2);
    const text = await registry.metrics();
    assert.match(
      text,
      /ratelimit_service_rate_limit_over_limit_with_local_cache\{domain="test-domain",key="key3"\} 5/,
    );
    advance(3_600_000);
    assert.equal((await svc.shouldRateLimit(req('test-domain', 'key3', 'a'))).overallCode, 'OK');
    assert.equal(store.calls, 3);
    await store.close();
  });

  it('does not call the store when no descriptor needs a counter', async () => {
    const { svc, store } = make();
    store.fail = new StoreError('ERR_REDIS_UNAVAILABLE', 'down');
    const r = await svc.shouldRateLimit({
      domain: 'test-domain',
      hitsAddend: 0,
      descriptors: [{ entries: [{ key: 'key6', value: 'x' }] }, { entries: [{ key: 'none', value: 'x' }] }],
    });
    assert.equal(r.overallCode, 'OK');
    assert.equal(store.calls, 0);
    await store.close();
  });

  it('a store failure is an error by default, OK with fail-open', async () => {
    const closed = make();
    closed.store.fail = new StoreError('ERR_REDIS_TIMEOUT', 'slow');
    await assert.rejects(closed.svc.shouldRateLimit(req('test-domain', 'key2', 'x')), {
      code: 'ERR_REDIS_TIMEOUT',
    });
    const open = make({ failOpen: true });
    open.store.fail = new StoreError('ERR_REDIS_UNAVAILABLE', 'down');
    const r = await open.svc.shouldRateLimit(req('test-domain', 'key2', 'x'));
    assert.equal(r.overallCode, 'OK');
    assert.equal(r.statuses[0]?.code, 'OK');
    const text = await open.registry.metrics();
    assert.match(text, /ratelimit_redis_errors 1/);
    await closed.store.close();
    await open.store.close();
  });

  it('bounds per-rule metric labels', async () => {
    const { svc, registry, store } = make();
    for (const v of ['a', 'b', 'c', 'd', 'e'])
      await svc.shouldRateLimit({
        domain: 'test-domain',
        hitsAddend: 0,
        descriptors: [{ entries: [{ key: v, value: v }], override: { requestsPerUnit: 9, unit: 'SECOND' } }],
      });
    const text = await registry.metrics();
    assert.match(text, /key="_overflow"\} 2/);
    await store.close();
  });

  describe('STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT', () => {
    // the reference's TestOverLimitWithStopCacheKeyIncrementWhenOverlimitConfig: two counters at 10,
    // limits 15 and 14 per hour, per-descriptor addends
    const twoKeys = (a: number, b: number): CoreRequest => ({
      domain: 'test-domain',
      hitsAddend: 0,
      descriptors: [
        {
          entries: [{ key: 'key4', value: 'value4' }],
          override: { requestsPerUnit: 15, unit: 'HOUR' },
          hitsAddend: a,
        },
        {
          entries: [{ key: 'key5', value: 'value5' }],
          override: { requestsPerUnit: 14, unit: 'HOUR' },
          hitsAddend: b,
        },
      ],
    });
    const counts = async (store: CountingStore): Promise<number[]> => {
      const keys = [...store.inner.keys()].sort();
      return store.inner.peek(keys);
    };
    const brief = (r: { statuses: readonly { code: string; limitRemaining: number }[] }): string[] =>
      r.statuses.map((s) => `${s.code} ${s.limitRemaining}`);

    it('increments only the counters that go over; the others keep their count', async () => {
      const { svc, store, registry } = make({ stop: true, cache: 0 });
      await svc.shouldRateLimit(twoKeys(10, 10));
      assert.deepEqual(brief(await svc.shouldRateLimit(twoKeys(1, 1))), ['OK 4', 'OK 3']);
      assert.deepEqual(brief(await svc.shouldRateLimit(twoKeys(2, 2))), ['OK 2', 'OK 1']);
      // key5 would go over (13 + 2 > 14): only key5 is incremented, key4 stays at 13
      assert.deepEqual(brief(await svc.shouldRateLimit(twoKeys(2, 2))), ['OK 2', 'OVER_LIMIT 0']);
      assert.deepEqual(await counts(store), [13, 15]);
      const text = await registry.metrics();
      assert.match(
        text,
        /ratelimit_service_rate_limit_near_limit\{domain="test-domain",key="key4_value4"\} 2/,
      );
      assert.match(
        text,
        /ratelimit_service_rate_limit_over_limit\{domain="test-domain",key="key5_value5"\} 1/,
      );
      await store.close();
    });

    it('increments nothing when a limit is over in the local cache', async () => {
      const { svc, store } = make({ stop: true, cache: 100 });
      await svc.shouldRateLimit(twoKeys(13, 14));
      // key5 goes over (and into the local cache); key4 is not consumed
      assert.deepEqual(brief(await svc.shouldRateLimit(twoKeys(1, 1))), ['OK 2', 'OVER_LIMIT 0']);
      assert.deepEqual(await counts(store), [13, 15]);
      const calls = store.calls;
      assert.deepEqual(brief(await svc.shouldRateLimit(twoKeys(1, 1))), ['OK 2', 'OVER_LIMIT 0']);
      assert.equal(store.calls, calls + 1, 'key4 is read, not incremented');
      assert.deepEqual(await counts(store), [13, 15]);
      await store.close();
    });

    it('is off by default: every counter is incremented, as before', async () => {
      const { svc, store } = make({ cache: 0 });
      await svc.shouldRateLimit(twoKeys(13, 13));
      assert.deepEqual(brief(await svc.shouldRateLimit(twoKeys(2, 2))), ['OK 0', 'OVER_LIMIT 0']);
      assert.deepEqual(await counts(store), [15, 15]);
      await store.close();
    });
  });
});
