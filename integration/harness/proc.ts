import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';

/** Every child process started by any harness in this test process; killed on exit no matter what. */
const LIVE = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of LIVE) child.kill('SIGKILL');
});

const reserved = new Set<number>();

/** A free TCP port on 127.0.0.1 (never handed out twice by this process). */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.unref();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        const p = typeof addr === 'object' && addr ? addr.port : 0;
        srv.close(() => resolve(p));
      });
    });
    if (!reserved.has(port)) {
      reserved.add(port);
      return port;
    }
  }
}

/** Polls `probe` until it returns a value other than undefined/false, or throws after `timeoutMs`. */
export async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs?: number; intervalMs?: number; abort?: () => string | undefined } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  let lastError: unknown;
  for (;;) {
    const aborted = opts.abort?.();
    if (aborted) throw new Error(`${what}: ${aborted}`);
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${opts.timeoutMs ?? 30_000} ms waiting for ${what}${detail}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}

/** True when a TCP connection to 127.0.0.1:port succeeds. */
export function tcpOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** A child process whose output is kept (last lines) for failure reports. */
export class ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly #lines: string[] = [];
  readonly #maxLines: number;
  #exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  #expectedExit = false;
  readonly exited: Promise<void>;

  constructor(
    name: string,
    cmd: string,
    args: readonly string[],
    opts: { env?: NodeJS.ProcessEnv; cwd?: string; maxLines?: number } = {},
  ) {
    this.name = name;
    this.#maxLines = opts.maxLines ?? 400;
    this.child = spawn(cmd, [...args], {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    LIVE.add(this.child);
    const onData = (stream: string) => (buf: Buffer) => {
      for (const line of buf.toString('utf8').split('\n')) {
        if (line === '') continue;
        this.#lines.push(stream === 'err' ? `! ${line}` : line);
        if (this.#lines.length > this.#maxLines) this.#lines.shift();
      }
    };
    this.child.stdout?.on('data', onData('out'));
    this.child.stderr?.on('data', onData('err'));
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.#exited = { code, signal };
        LIVE.delete(this.child);
        resolve();
      });
      this.child.once('error', (err) => {
        this.#lines.push(`! spawn error: ${err.message}`);
        this.#exited = { code: -1, signal: null };
        LIVE.delete(this.child);
        resolve();
      });
    });
  }

  /** The kept output, one line per entry. */
  logs(): string {
    return this.#lines.join('\n');
  }

  /** Lines kept so far (for tests that look for a log entry). */
  lines(): readonly string[] {
    return this.#lines;
  }

  /** Exit status when the process has exited. */
  get exitStatus(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.#exited;
  }

  /** Set when the process exited without the harness asking it to. */
  get unexpectedExit(): string | undefined {
    if (!this.#exited || this.#expectedExit) return undefined;
    return `${this.name} exited unexpectedly (code ${this.#exited.code}, signal ${this.#exited.signal})`;
  }

  /** Stops the process: SIGTERM, then SIGKILL after `graceMs`. Resolves once it has exited. */
  async stop(graceMs = 5000): Promise<void> {
    this.#expectedExit = true;
    if (this.#exited) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Kills the process at once (SIGKILL) as an expected event (fault tests). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    this.#expectedExit = true;
    if (this.#exited) return;
    this.child.kill(signal);
    await this.exited;
  }

  /** Sends a signal without marking the exit as expected (to test that the harness notices). */
  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }
}
