import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { createLogger } from '@extsvc/common/logger';
import { MemoryStore, OverLimitCache, type CounterStore } from '../src/counter-store.ts';
import { StoreError } from '../src/errors.ts';
import type { CoreRequest, CounterOp } from '../src/limiter.ts';
import { Metrics } from '../src/metrics.ts';
import { RateLimitService } from '../src/service.ts';
import { goodRules, settings } from './helpers.ts';

const rules = goodRules(['basic_config.yaml', 'modes.yaml']);
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

function make(opts: { failOpen?: boolean; cache?: number } = {}) {
  let now = 7_200_000_000;
  const store = new CountingStore(() => now);
  const registry = new Registry();
  const metrics = new Metrics(registry, 3);
  const svc = new RateLimitService({
    rules: () => rules,
    settings: settings(),
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
});
