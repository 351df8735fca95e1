import { beforeEach, describe, it } from 'mocha';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { HealthState } from '@extsvc/common/health';
import { MemoryStore } from '../src/counter-store.ts';
import {
  lookupDescriptor,
  parseDescriptor,
  ratelimitDiagSections,
  registerRatelimitDiag,
  safeRedisUrl,
  type RatelimitDiagSource,
} from '../src/diag.ts';
import type { CoreSettings } from '../src/limiter.ts';
import { plan } from '../src/limiter.ts';
import { buildRuleSet, type RuleSet } from '../src/rules.ts';

// Built per test, not while the file loads: rules.ts code run at load makes each of its mutants restart
// Stryker's worker (issue 13).
let RULES: RuleSet;
const buildRules = (): RuleSet =>
  buildRuleSet(
    [
      {
        name: 'unit.yaml',
        content: `domain: unit
descriptors:
  - key: key1
    value: value1
    descriptors:
      - key: subkey1
        rate_limit: {unit: minute, requests_per_unit: 5}
  - key: shadow
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1, name: shadowed}
  - key: smooth
    rate_limit: {unit: hour, requests_per_unit: 10, algorithm: sliding_window}
  - key: free
    rate_limit: {unlimited: true}
`,
      },
    ],
    { mergeDomains: false },
  );

const SETTINGS: CoreSettings = {
  cacheKeyPrefix: 'u:',
  nearLimitRatio: 0.8,
  globalShadowMode: false,
  globalQuotaMode: false,
  responseHeaders: { enabled: false, limit: 'l', remaining: 'r', reset: 's' },
  dynamicMetadata: false,
  expirationJitterMaxSeconds: 0,
};

// 30 s into a minute, far from any window edge.
const NOW = Date.parse('2026-01-01T10:20:30Z');

function source(store: MemoryStore, over: Partial<RatelimitDiagSource> = {}): RatelimitDiagSource {
  return {
    rules: () => RULES,
    lastError: () => undefined,
    loadedAt: () => NOW - 1000,
    configDir: '/etc/ratelimit',
    settings: SETTINGS,
    store,
    now: () => NOW,
    ...over,
  };
}

/** Real hits through the store, as the service would count them. */
async function hit(
  store: MemoryStore,
  entries: Array<{ key: string; value: string }>,
  n: number,
): Promise<void> {
  for (let i = 0; i < n; i++) {
    const p = plan(
      { domain: 'unit', descriptors: [{ entries }], hitsAddend: 1 },
      RULES,
      SETTINGS,
      NOW,
      () => 0,
    );
    await store.apply(p.ops);
  }
}

describe('ratelimit/diag', () => {
  beforeEach(() => {
    RULES = buildRules();
  });
  it('hides Redis credentials', () => {
    assert.equal(safeRedisUrl('redis://user:pw@10.0.0.1:6379/0'), 'redis://(redacted)@10.0.0.1:6379/0');
    assert.equal(safeRedisUrl('redis://10.0.0.1:6379'), 'redis://10.0.0.1:6379');
    assert.equal(safeRedisUrl('10.0.0.1:6379'), '10.0.0.1:6379');
    assert.equal(
      safeRedisUrl('mymaster,10.0.0.1:26379,10.0.0.2:26379'),
      'mymaster,10.0.0.1:26379,10.0.0.2:26379',
    );
  });

  it('parses k=v descriptors', () => {
    assert.deepEqual(parseDescriptor(' a=1, b , c=x=y '), [
      { key: 'a', value: '1' },
      { key: 'b', value: '' },
      { key: 'c', value: 'x=y' },
    ]);
    assert.throws(() => parseDescriptor(''), /at least one/);
    assert.throws(() => parseDescriptor('=v'), /empty key/);
  });

  it('shows the trees with limits and flags, the load error and the store', async () => {
    const store = new MemoryStore({ now: () => NOW });
    try {
      const sections = ratelimitDiagSections(
        source(store, {
          lastError: () => 'bad.yaml: invalid rate limit unit',
          redis: { type: 'single', url: 'redis://:pw@r:6379', tls: false, auth: true },
        }),
      );
      const tree = sections.find((s) => s.title === 'Descriptor trees');
      assert.ok(tree?.kind === 'tree');
      assert.deepEqual(tree.nodes[0], {
        label: 'domain unit',
        children: [
          { label: 'key1=value1', children: [{ label: 'subkey1', detail: '5/MINUTE' }] },
          { label: 'shadow', detail: '1/MINUTE · shadow_mode · name=shadowed' },
          { label: 'smooth', detail: '10/HOUR sliding' },
          { label: 'free', detail: 'unlimited' },
        ],
      });
      const config = sections.find((s) => s.title === 'Configuration');
      assert.ok(config?.kind === 'kv');
      const kv = new Map(config.entries);
      assert.equal(kv.get('last reload'), 'failed');
      assert.equal(kv.get('last reload error'), 'bad.yaml: invalid rate limit unit');
      assert.equal(kv.get('state'), 'loaded');
      const json = JSON.stringify(sections);
      assert.ok(!json.includes('pw'), 'the Redis password is shown');
    } finally {
      await store.close();
    }
  });

  it('looks up rule, count and reset without counting (memory store: apply with addend 0)', async () => {
    const store = new MemoryStore({ now: () => NOW });
    try {
      const entries = [
        { key: 'key1', value: 'value1' },
        { key: 'subkey1', value: 'a' },
      ];
      await hit(store, entries, 2);
      for (let i = 0; i < 3; i++) {
        const r = await lookupDescriptor(source(store), 'unit', entries);
        assert.equal(r['match'], 'rule');
        assert.deepEqual(r['limits'], [
          {
            requestsPerUnit: 5,
            unit: 'MINUTE',
            algorithm: 'fixed_window',
            counterKey: `u:unit_key1_value1_subkey1_a_${Math.floor(NOW / 60_000) * 60}`,
            count: 2,
            remaining: 3,
            nextHitOverLimit: false,
            resetSeconds: 30,
            windowEnds: '2026-01-01T10:21:00.000Z',
          },
        ]);
      }
      await hit(store, entries, 1);
      const after = (await lookupDescriptor(source(store), 'unit', entries))['limits'] as Array<{
        count: number;
      }>;
      assert.equal(after[0]?.count, 3, 'lookups did not count, real hits did');
      await hit(store, [{ key: 'smooth', value: 's' }], 4);
      const smooth = await lookupDescriptor(source(store), 'unit', [{ key: 'smooth', value: 's' }]);
      assert.deepEqual((smooth['limits'] as Array<{ count: number; algorithm: string }>)[0]?.count, 4);
      assert.equal(
        (await lookupDescriptor(source(store), 'unit', [{ key: 'other', value: 'x' }]))['match'],
        'none',
      );
      assert.equal(
        (await lookupDescriptor(source(store), 'nope', [{ key: 'a', value: 'b' }]))['match'],
        'domain_not_found',
      );
      const free = await lookupDescriptor(source(store), 'unit', [{ key: 'free', value: 'x' }]);
      assert.deepEqual([free['match'], free['limits']], ['rule', []]);
    } finally {
      await store.close();
    }
  });

  it('reads with peek when the store has it, and never calls apply', async () => {
    const store = new MemoryStore({ now: () => NOW });
    try {
      const seen: string[][] = [];
      const peekStore = {
        kind: 'redis',
        ready: () => true,
        apply: () => Promise.reject(new Error('apply must not be called')),
        peek: async (keys: readonly string[]) => {
          seen.push([...keys]);
          return keys.map((k) =>
            k.includes('{') ? (k.endsWith(`_${Math.floor(NOW / 3_600_000) * 3600}`) ? 2 : 6) : 4,
          );
        },
      };
      const fixed = await lookupDescriptor(source(store, { store: peekStore }), 'unit', [
        { key: 'shadow', value: 'x' },
      ]);
      assert.equal((fixed['limits'] as Array<{ count: number }>)[0]?.count, 4);
      assert.equal((fixed['rule'] as { shadowMode: boolean }).shadowMode, true);
      // Sliding window: the previous hour weighted by what is left of it (1 - 20.5/60) plus the current one.
      const sliding = await lookupDescriptor(source(store, { store: peekStore }), 'unit', [
        { key: 'smooth', value: 's' },
      ]);
      assert.equal(
        (sliding['limits'] as Array<{ count: number }>)[0]?.count,
        Math.floor(6 * (1 - 1230 / 3600)) + 2,
      );
      assert.equal(seen.length, 2);
    } finally {
      await store.close();
    }
  });

  it('answers the form over HTTP: 200 with the lookup, 400 for bad input, 503 when the store fails', async () => {
    const store = new MemoryStore({ now: () => NOW });
    const app = Fastify();
    try {
      let failing = false;
      registerRatelimitDiag(app, {
        service: 'ratelimit',
        version: '0.0.0',
        health: new HealthState(),
        source: source(store, {
          store: {
            kind: 'memory',
            ready: () => true,
            apply: (ops) => (failing ? Promise.reject(new Error('down')) : store.apply(ops)),
          },
        }),
      });
      const post = (payload: object) =>
        app.inject({ method: 'POST', url: '/diag/ratelimit/lookup', payload });
      const ok = await post({ domain: 'unit', descriptor: 'key1=value1,subkey1=b' });
      assert.equal(ok.statusCode, 200);
      assert.equal(ok.json<{ readOnly: boolean }>().readOnly, true);
      assert.equal((await post({ domain: '', descriptor: 'a=b' })).statusCode, 400);
      assert.equal((await post({ domain: 'unit', descriptor: '' })).statusCode, 400);
      failing = true;
      assert.equal((await post({ domain: 'unit', descriptor: 'key1=value1,subkey1=b' })).statusCode, 503);
      const page = await app.inject({ method: 'GET', url: '/diag' });
      assert.match(page.body, /Look up a descriptor/);
    } finally {
      await app.close();
      await store.close();
    }
  });
});
