import { request } from 'node:http';
import type { ChallengeToSolve } from './ca.ts';
import { AcmeError } from './errors.ts';

/** Options of the HTTP-01 self-check. */
export interface SelfCheckOptions {
  /** `host:port` to connect to (Envoy's HTTP listener as the CA would reach it); the Host header is the name. */
  readonly address: string;
  /** Attempts before giving up (one pass is enough). */
  readonly attempts: number;
  /** Delay between attempts, ms. */
  readonly intervalMs: number;
  /** Timeout of one GET, ms. */
  readonly timeoutMs: number;
}

function get(
  address: string,
  name: string,
  path: string,
  timeoutMs: number,
): Promise<{ status: number; body: string }> {
  const idx = address.lastIndexOf(':');
  const host = address.slice(0, idx).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(idx + 1));
  return new Promise((resolve, reject) => {
    const req = request(
      { host, port, path, method: 'GET', headers: { host: name }, agent: false, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (body.length < 65536) body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs}ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Self-check through a configured address, not system DNS (acme-client's check resolves the name,
 * which fails behind split horizon and in this test bed). Fails with ERR_SELF_CHECK before the CA
 * is asked, which spares the CA's failed-validation budget.
 */
export function createSelfCheck(opts: SelfCheckOptions): (c: ChallengeToSolve) => Promise<void> {
  return async (c) => {
    const path = `/.well-known/acme-challenge/${c.token}`;
    let last = '';
    for (let i = 0; i < opts.attempts; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, opts.intervalMs).unref());
      try {
        const res = await get(opts.address, c.name, path, opts.timeoutMs);
        if (res.status === 200 && res.body.trim() === c.keyAuthorization) return;
        last = res.status === 200 ? 'answered 200 with a different body' : `answered ${res.status}`;
      } catch (err) {
        last = (err as Error).message;
      }
    }
    throw new AcmeError(
      'ERR_SELF_CHECK',
      `self-check of http://${c.name}/.well-known/acme-challenge/<token> through ${opts.address} failed after ${opts.attempts} attempts: ${last}`,
    );
  };
}
