import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/** Bytes of one session key (AES-256). */
export const SESSION_KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KID_BYTES = 4;

/** A key of the session key list with its short identifier (first bytes of its SHA-256). */
interface SealKey {
  readonly kid: Buffer;
  readonly key: Buffer;
}

/**
 * Seals and opens cookie values with AES-256-GCM (encrypted and authenticated). The first key
 * seals; every key opens (rotation: prepend the new key, drop the old one after a session TTL).
 * The cookie name is the associated data, so a value sealed for one cookie (the short-lived sign-in
 * state) is refused as another (the session). Format: base64url(kid[4] | iv[12] | ciphertext | tag[16]).
 */
export class Sealer {
  readonly #keys: readonly SealKey[];

  /** `keys`: 32-byte keys, the first one seals. */
  constructor(keys: readonly Uint8Array[]) {
    if (keys.length === 0) throw new TypeError('at least one session key is required');
    this.#keys = keys.map((k) => {
      if (k.length !== SESSION_KEY_BYTES) throw new TypeError('session keys are 32 bytes');
      const key = Buffer.from(k);
      return { key, kid: createHash('sha256').update(key).digest().subarray(0, KID_BYTES) };
    });
  }

  /** Encrypts `plain` for the cookie `name`. */
  seal(name: string, plain: string): string {
    const k = this.#keys[0] as SealKey;
    const iv = randomBytes(IV_BYTES);
    const c = createCipheriv('aes-256-gcm', k.key, iv);
    c.setAAD(Buffer.from(name, 'utf8'));
    const body = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
    return Buffer.concat([k.kid, iv, body, c.getAuthTag()]).toString('base64url');
  }

  /** Decrypts a value sealed for `name`; undefined when it is malformed, tampered or of an unknown key. */
  open(name: string, sealed: string): string | undefined {
    if (!/^[A-Za-z0-9_-]+$/.test(sealed)) return undefined;
    const raw = Buffer.from(sealed, 'base64url');
    if (raw.length < KID_BYTES + IV_BYTES + TAG_BYTES) return undefined;
    const kid = raw.subarray(0, KID_BYTES);
    const k = this.#keys.find((x) => x.kid.equals(kid));
    if (!k) return undefined;
    const iv = raw.subarray(KID_BYTES, KID_BYTES + IV_BYTES);
    const tag = raw.subarray(raw.length - TAG_BYTES);
    try {
      const d = createDecipheriv('aes-256-gcm', k.key, iv, { authTagLength: TAG_BYTES });
      d.setAAD(Buffer.from(name, 'utf8'));
      d.setAuthTag(tag);
      return Buffer.concat([
        d.update(raw.subarray(KID_BYTES + IV_BYTES, raw.length - TAG_BYTES)),
        d.final(),
      ]).toString('utf8');
    } catch {
      return undefined;
    }
  }
}

/**
 * Parses a session key file: one key per line, base64 or base64url of 32 random bytes (or 64 hex
 * digits); blank lines and `#` comments are ignored. Returns the keys or a problem (never a key).
 */
export function parseKeyFile(text: string): Uint8Array[] | string {
  const keys: Uint8Array[] = [];
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  for (const [i, line] of lines.entries()) {
    if (line === '' || line.startsWith('#')) continue;
    let key: Buffer;
    if (/^[0-9a-fA-F]{64}$/.test(line)) key = Buffer.from(line, 'hex');
    else if (/^[A-Za-z0-9+/_-]+=*$/.test(line)) key = Buffer.from(line, 'base64');
    else return `line ${i + 1} is not base64 or hex`;
    if (key.length !== SESSION_KEY_BYTES)
      return `line ${i + 1} is ${key.length} bytes, want ${SESSION_KEY_BYTES} (openssl rand -base64 32)`;
    keys.push(key);
  }
  if (keys.length === 0) return 'holds no key (one base64 key of 32 bytes per line, the first seals)';
  return keys;
}
