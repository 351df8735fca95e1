import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../src/logger.ts';
import { closeAll, runMain } from '../src/lifecycle.ts';
import { ConfigError } from '../src/errors.ts';

class FakeProcess {
  readonly handlers = new Map<string, Array<(arg?: unknown) => void>>();
  readonly exits: number[] = [];
  stderrText = '';
  readonly stderr = { write: (s: string) => ((this.stderrText += s), true) };
  on(event: string, listener: (arg?: unknown) => void): this {
    this.handlers.set(event, [...(this.handlers.get(event) ?? []), listener]);
    return this;
  }
  emit(event: string, arg?: unknown): void {
    for (const l of this.handlers.get(event) ?? []) l(arg);
  }
  exit(code: number): never {
    this.exits.push(code);
    return undefined as never;
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const quietLogger = () =>
  createLogger({ service: 't', level: 'silent', destination: new Writable({ write: (_c, _e, cb) => cb() }) });

describe('common/lifecycle', () => {
  it('exits 2 with one line on a ConfigError', async () => {
    const proc = new FakeProcess();
    runMain('svc', () => Promise.reject(new ConfigError([{ field: '--port', message: 'bad' }])), proc);
    await tick();
    assert.deepEqual(proc.exits, [2]);
    assert.equal(proc.stderrText, 'svc: configuration error: --port: bad\n');
  });

  it('first signal closes and exits 0, a second exits 130', async () => {
    const proc = new FakeProcess();
    let closes = 0;
    let release: () => void = () => undefined;
    const closed = new Promise<void>((r) => (release = r));
    runMain(
      'svc',
      async () => ({
        logger: quietLogger(),
        service: {
          close: async () => {
            closes++;
            await closed;
          },
        },
      }),
      proc,
      () => undefined,
    );
    await tick();
    proc.emit('SIGTERM');
    await tick();
    assert.equal(closes, 1);
    assert.deepEqual(proc.exits, []);
    proc.emit('SIGINT');
    assert.deepEqual(proc.exits, [130]);
    release();
    await tick();
    await tick();
    assert.deepEqual(proc.exits, [130, 0]);
  });

  it('runs afterStart once the service started, with its logger, and not for --help', async () => {
    const logger = quietLogger();
    const calls: unknown[] = [];
    runMain(
      'svc',
      async () => ({ logger, service: { close: async () => undefined } }),
      new FakeProcess(),
      (l) => calls.push(l),
    );
    runMain(
      'svc',
      async () => 'help',
      new FakeProcess(),
      (l) => calls.push(l),
    );
    await tick();
    await tick();
    assert.deepEqual(calls, [logger]);
  });

  it('an unhandled rejection is fatal (exit 1)', async () => {
    const proc = new FakeProcess();
    runMain('svc', async () => 'help', proc);
    proc.emit('unhandledRejection', new Error('boom'));
    assert.deepEqual(proc.exits, [1]);
    assert.match(proc.stderrText, /unhandled rejection: boom/);
  });

  it('closeAll attempts every component and reports all errors', async () => {
    const order: string[] = [];
    await assert.rejects(
      closeAll([
        { close: async () => void order.push('a') },
        {
          close: async () => {
            order.push('b');
            throw new Error('b failed');
          },
        },
        undefined,
        { close: async () => void order.push('c') },
      ]),
      (err: unknown) => err instanceof AggregateError && err.errors.length === 1,
    );
    assert.deepEqual(order, ['a', 'b', 'c']);
  });
});
