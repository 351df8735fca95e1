import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { ServiceError } from '../src/errors.ts';
import {
  assemble,
  checkRequestLimits,
  counterKey,
  hitsAddendOf,
  plan,
  type CoreRequest,
  type CounterResult,
} from '../src/limiter.ts';
import { goodRules, settings } from './helpers.ts';

// Limiter cases the mutation run (issue 13) found unasserted: the request bounds at their edges with
// their messages, addends, counter keys of sliding windows and the TTL with expiration jitter.

const req = (domain: string, ...descs: Array<Array<[string, string]>>): CoreRequest => ({
  domain,
  hitsAddend: 0,
  descriptors: descs.map((d) => ({ entries: d.map(([key, value]) => ({ key, value })) })),
});

describe('ratelimit/limiter cases (mutation findings)', () => {
  const limits = { maxDescriptors: 2, maxEntries: 2, maxValueLength: 4, maxHitsAddend: 10 };
  const message = (r: CoreRequest): string => {
    try {
      checkRequestLimits(r, limits);
      return 'ok';
    } catch (err) {
      assert.ok(err instanceof ServiceError);
      assert.equal(err.code, 'ERR_INVALID_REQUEST');
      return err.message;
    }
  };

  it('request bounds: each refusal names the bound; a value at the bound passes', () => {
    assert.equal(message(req('dddd', [['kkkk', 'vvvv']])), 'ok');
    assert.equal(message(req('ddddd', [['k', 'v']])), 'domain longer than 4 characters');
    assert.equal(message(req('d', [['k', 'v']], [['k', 'v']], [['k', 'v']])), '3 descriptors, more than 2');
    assert.equal(message({ ...req('d', [['k', 'v']]), hitsAddend: 11 }), 'hits_addend above 10');
    assert.equal(message({ ...req('d', [['k', 'v']]), hitsAddend: 10 }), 'ok');
    assert.equal(
      message(
        req('d', [
          ['a', '1'],
          ['b', '2'],
          ['c', '3'],
        ]),
      ),
      'descriptor with 3 entries, more than 2',
    );
    assert.equal(
      message(
        req('d', [
          ['a', '1'],
          ['b', '2'],
        ]),
      ),
      'ok',
    );
    const addend = (n: number): CoreRequest => ({
      domain: 'd',
      hitsAddend: 0,
      descriptors: [{ entries: [{ key: 'k', value: 'v' }], hitsAddend: n }],
    });
    assert.equal(message(addend(11)), 'descriptor hits_addend above 10');
    assert.equal(message(addend(10)), 'ok');
    assert.equal(message(req('d', [['kkkkk', 'v']])), 'descriptor entry longer than 4 characters');
    assert.equal(message(req('d', [['k', 'vvvvv']])), 'descriptor entry longer than 4 characters');
  });

  it('hits addend: the descriptor value even when 0, else the request value, at least 1', () => {
    const r: CoreRequest = {
      domain: 'd',
      hitsAddend: 5,
      descriptors: [{ entries: [], hitsAddend: 0 }, { entries: [] }],
    };
    assert.equal(hitsAddendOf(r, 0), 0);
    assert.equal(hitsAddendOf(r, 1), 5);
    assert.equal(hitsAddendOf(r, 7), 5);
    assert.equal(hitsAddendOf({ ...r, hitsAddend: 0 }, 1), 1);
  });

  it('counter keys: sliding windows hash-tag everything before the window start; missing values are empty', () => {
    const e = [{ key: 'k', value: 'v' }];
    assert.equal(counterKey('p:', 'd', e, ['v'], '_sw', 60), 'p:{d_k_v_sw}_60');
    assert.equal(counterKey('', 'd', e, ['v'], '_r1_sw', 60), '{d_k_v_r1_sw}_60');
    assert.equal(counterKey('', 'd', e, ['v'], '_r1', 60), 'd_k_v_r1_60');
    const two = [...e, { key: 'k2', value: 'x' }];
    assert.equal(counterKey('', 'd', two, ['v'], '', 0), 'd_k_v_k2__0');
  });

  it('TTL: one window (two when sliding) plus the jitter drawn below the configured maximum', () => {
    const rules = goodRules(['modes.yaml']);
    const r = req('modes', [['regular', 'a']], [['smooth', 'b']]);
    const now = 1_000_000_020_000;
    const ttl = (jitter: number, random: number): Array<number | undefined> =>
      plan(r, rules, settings({ expirationJitterMaxSeconds: jitter }), now, () => random).ops.map(
        (o) => o.ttlSeconds,
      );
    assert.deepEqual(ttl(0, 0.99), [60, 120]);
    assert.deepEqual(ttl(10, 0.5), [65, 125]);
    assert.deepEqual(ttl(10, 0.99), [69, 129]);
    const ops = plan(r, rules, settings(), now, () => 0).ops;
    assert.equal(ops[1]?.prevKey, `{modes_smooth_b_sw}_${Math.floor(now / 60_000) * 60 - 60}`);
  });

  it('refusals before planning carry their codes', () => {
    const codeOf = (f: () => unknown): string => {
      try {
        f();
        return 'none';
      } catch (err) {
        return err instanceof ServiceError ? err.code : 'other';
      }
    };
    assert.equal(
      codeOf(() => plan(req('d'), goodRules(['modes.yaml']), settings(), 0, () => 0)),
      'ERR_EMPTY_DESCRIPTORS',
    );
    assert.equal(
      codeOf(() => plan(req('d', [['k', 'v']]), undefined, settings(), 0, () => 0)),
      'ERR_NO_CONFIG',
    );
  });

  describe('answers assembled from counts (rate limit headers, dynamic metadata)', () => {
    const now = 1_000_000_020_000; // a minute starts here; the hour 780 s later
    const s = settings({
      responseHeaders: { enabled: true, limit: 'L', remaining: 'R', reset: 'S' },
      dynamicMetadata: true,
    });
    const d = (k: string): CoreRequest['descriptors'][number] => ({ entries: [{ key: k, value: 'x' }] });
    const run = (r: CoreRequest, after: number[]) => {
      const p = plan(r, goodRules(['modes.yaml']), s, now, () => 0);
      const results: CounterResult[] = after.map((a) => ({ kind: 'count', after: a }));
      const o = assemble(p, results, s);
      const headers = Object.fromEntries(o.responseHeaders.map((h) => [h.key, h.value]));
      return {
        code: o.overallCode,
        statuses: o.statuses.map((x) => [x.code, x.limitRemaining]),
        headers,
        md: o.dynamicMetadata,
      };
    };
    const req = (descriptors: CoreRequest['descriptors'], hitsAddend = 0): CoreRequest => ({
      domain: 'modes',
      hitsAddend,
      descriptors,
    });

    it('headers describe the tightest limit, or the one that is over', () => {
      const tight = run(req([d('regular'), d('detailed')]), [1, 3]);
      assert.equal(tight.code, 'OK');
      assert.deepEqual(tight.headers, { L: '1', R: '0', S: '60' });
      const over = run(req([d('detailed'), d('regular')]), [3, 2]);
      assert.deepEqual(over.statuses, [
        ['OK', 7],
        ['OVER_LIMIT', 0],
      ]);
      assert.deepEqual(over.headers, { L: '1', R: '0', S: '60' });
      const quota = run(req([d('quota'), d('detailed')]), [2, 9]);
      assert.equal(quota.code, 'OVER_LIMIT');
      assert.deepEqual(quota.headers, { L: '1', R: '0', S: '60' });
    });

    it('metadata: the request summary, and rule metadata of the descriptors that passed only', () => {
      const ok = run(
        req(
          [d('meta'), { ...d('regular'), hitsAddend: 1, override: { requestsPerUnit: 5, unit: 'HOUR' } }],
          2,
        ),
        [2, 1],
      );
      assert.deepEqual(ok.headers, { L: '5', R: '4', S: '780' });
      assert.deepEqual(ok.md, {
        domain: 'modes',
        descriptors: [
          { entries: ['meta=x'] },
          { entries: ['regular=x'], limit: 'requests_per_unit:5 unit:HOUR', hitsAddend: 1 },
        ],
        hitsAddend: 2,
        metadata: { team: 'payments', nested: { a: 1 } },
      });
      const over = run(req([d('meta'), d('regular')]), [11, 1]);
      assert.deepEqual(over.md, {
        domain: 'modes',
        descriptors: [{ entries: ['meta=x'] }, { entries: ['regular=x'] }],
      });
    });
  });

  it('near and over hit counts at the edges (limit 10, near ratio 0.8)', () => {
    const rules = goodRules(['modes.yaml']);
    const table: Array<[number, number, [number, number, number]]> = [
      [8, 1, [0, 0, 1]],
      [9, 1, [0, 1, 1]],
      [10, 1, [0, 1, 1]],
      [11, 1, [1, 0, 0]],
      [9, 3, [0, 1, 3]],
      [12, 3, [2, 1, 0]],
      [13, 3, [3, 0, 0]],
    ];
    for (const [after, addend, [over, near, within]] of table) {
      const r: CoreRequest = {
        domain: 'modes',
        hitsAddend: addend,
        descriptors: [{ entries: [{ key: 'detailed', value: 'x' }] }],
      };
      const o = assemble(
        plan(r, rules, settings(), 0, () => 0),
        [{ kind: 'count', after }],
        settings(),
      );
      const st = o.stats[0];
      assert.deepEqual(
        [st?.overLimit, st?.nearLimit, st?.withinLimit],
        [over, near, within],
        `after ${after} +${addend}`,
      );
    }
  });
});
