import { execFileSync } from 'node:child_process';
import { request } from 'node:https';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PebbleHandle } from '../../harness/stack.ts';

/** The Pebble version build.sh builds by default (the tests are written against it). */
export const PEBBLE2_VERSION = 'v2.10.3';

/**
 * Path of the Pebble v2.10 binary: PEBBLE2_BIN, else build.sh's cached build (built on first use,
 * about 30 s; scripts/test.sh builds it in its setup phase).
 */
export function pebble2Bin(): string {
  const given = process.env['PEBBLE2_BIN'];
  if (given !== undefined && given !== '') return given;
  const script = join(dirname(fileURLToPath(import.meta.url)), 'build.sh');
  const out = execFileSync('bash', [script], {
    encoding: 'utf8',
    env: { ...process.env, PEBBLE2_VERSION },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const path = out.trim().split('\n').at(-1);
  if (path === undefined || path === '') throw new Error('pebble2/build.sh printed no binary path');
  return path;
}

/** Validity of each profile, seconds (Let's Encrypt's names; tlsserver shorter so the tests tell them apart). */
export const PROFILE_VALIDITY = { classic: 7_776_000, shortlived: 518_400, tlsserver: 864_000 } as const;

/** Pebble config fields: three profiles as Let's Encrypt names them, ECDSA keys. */
export const PEBBLE2_CONFIG: Record<string, unknown> = {
  keyAlgorithm: 'ecdsa',
  profiles: {
    classic: { description: 'ninety days', validityPeriod: PROFILE_VALIDITY.classic },
    shortlived: { description: 'six days', validityPeriod: PROFILE_VALIDITY.shortlived },
    tlsserver: { description: 'ten days (test)', validityPeriod: PROFILE_VALIDITY.tlsserver },
  },
};

/**
 * Overrides the ARI answer for a certificate through Pebble's management interface
 * (`POST /set-renewal-info/`, Pebble ≥ 2.8): the CA moves the suggested window.
 */
export function setRenewalInfo(
  pebble: PebbleHandle,
  leafPem: string,
  window: { readonly start: number; readonly end: number },
): Promise<void> {
  const body = JSON.stringify({
    Certificate: leafPem,
    ARIResponse: JSON.stringify({
      suggestedWindow: {
        start: new Date(window.start).toISOString(),
        end: new Date(window.end).toISOString(),
      },
    }),
  });
  return new Promise((resolve, reject) => {
    const req = request(
      `${pebble.managementUrl}/set-renewal-info/`,
      {
        method: 'POST',
        ca: pebble.caCertPem,
        headers: { 'content-type': 'application/json', 'user-agent': 'extsvc-integration' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          res.statusCode === 200
            ? resolve()
            : reject(new Error(`set-renewal-info: ${res.statusCode} ${Buffer.concat(chunks).toString()}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
