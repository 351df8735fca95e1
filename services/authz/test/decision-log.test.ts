import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ConfigError } from '@extsvc/common/errors';
import { DecisionLog, decisionLogEntry } from '../src/decision-log.ts';
import type { AuthRequest, Decision } from '../src/decision.ts';

const logger = pino({ level: 'silent' });
const req: AuthRequest = {
  method: 'post',
  host: 'api.example.com',
  path: '/orders/7?access_token=secret-in-query#frag',
  headers: {
    authorization: 'Bearer secret-token',
    cookie: 'sid=secret-cookie',
    'x-api-key': 'secret-key',
    'x-request-id': 'rid-1',
    b3: '80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1',
  },
  contextExtensions: {},
};
const allow: Decision = {
  kind: 'allow',
  reason: 'api_key',
  rule: 'partner',
  headers: [['x-user-id', 'secret-derived']],
  removeHeaders: ['x-api-key'],
  removeQuery: [],
  metadata: {
    policy: 'default',
    rule: 'partner',
    auth: 'api_key',
    api_key: 'acme',
    sub: 'svc-1',
    iss: 'https://id',
  },
};

describe('authz/decision-log', () => {
  it('an entry has ids, method, host, path without query, outcome and identity names; nothing from credentials', () => {
    const e = decisionLogEntry('grpc', allow, req, Date.UTC(2026, 0, 2, 3, 4, 5));
    assert.deepEqual(e, {
      type: 'decision',
      time: '2026-01-02T03:04:05.000Z',
      request_id: 'rid-1',
      trace_id: '80f198ee56343ba864fe8b2a57d3eff7',
      transport: 'grpc',
      method: 'POST',
      host: 'api.example.com',
      path: '/orders/7',
      rule: 'partner',
      result: 'allow',
      reason: 'api_key',
      subject: 'svc-1',
      issuer: 'https://id',
      api_key: 'acme',
    });
    assert.ok(!JSON.stringify(e).includes('secret'));
    const deny = decisionLogEntry(
      'http',
      { kind: 'deny', reason: 'invalid_api_key', rule: 'partner', status: 401, headers: [], body: '{}' },
      undefined,
      0,
    );
    assert.equal(deny.status, 401);
    assert.equal(deny.path, undefined, 'an unreadable request has no request fields');
  });

  it('samples by the rate, appends to a file, and a file that cannot be opened is a ConfigError on --decision-log', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'decision-log-'));
    try {
      const file = join(dir, 'd.jsonl');
      const draws = [0.1, 0.6, 0.49, 0.5];
      const d = await DecisionLog.open(file, { rate: 0.5, random: () => draws.shift() ?? 1, logger });
      for (let i = 0; i < 4; i++) d.record('grpc', allow, req);
      await d.close();
      await d.close();
      const lines = readFileSync(file, 'utf8').trim().split('\n');
      assert.equal(lines.length, 2, 'draws below the rate are written (0.1 and 0.49)');
      const again = await DecisionLog.open(file, { rate: 1, logger });
      again.record('http', allow, req);
      await again.close();
      assert.equal(readFileSync(file, 'utf8').trim().split('\n').length, 3, 'appended');
      await assert.rejects(
        DecisionLog.open(join(dir, 'missing', 'd.jsonl'), { rate: 1, logger }),
        (err: unknown) => err instanceof ConfigError && err.problems[0]?.field === '--decision-log',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
