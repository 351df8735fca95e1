import {
  X509Certificate,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
} from 'node:crypto';

/** Private key algorithms offered for issued certificates (ECDSA P-256 by default). */
export const KEY_TYPES = ['ecdsa-p256', 'ecdsa-p384', 'rsa2048', 'rsa3072', 'rsa4096'] as const;

/** One of KEY_TYPES. */
export type KeyType = (typeof KEY_TYPES)[number];

/** Facts read from a stored or issued certificate chain. */
export interface CertificateInfo {
  /** DNS names of the leaf (SANs, plus the CN when it looks like a name), sorted. */
  readonly names: readonly string[];
  /** Leaf validity start, epoch ms. */
  readonly notBefore: number;
  /** Leaf validity end, epoch ms. */
  readonly notAfter: number;
  /** Leaf serial, hex upper case. */
  readonly serial: string;
  /** Issuer distinguished name of the leaf. */
  readonly issuer: string;
  /** Number of certificates in the chain. */
  readonly chainLength: number;
}

/** Generates a private key in PKCS#8 PEM (never logged). */
export function generatePrivateKey(type: KeyType): string {
  switch (type) {
    case 'ecdsa-p256':
    case 'ecdsa-p384': {
      const { privateKey } = generateKeyPairSync('ec', {
        namedCurve: type === 'ecdsa-p256' ? 'prime256v1' : 'secp384r1',
      });
      return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    }
    case 'rsa2048':
    case 'rsa3072':
    case 'rsa4096': {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: Number(type.slice(3)) });
      return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    }
  }
}

/** Splits a PEM bundle into its certificate blocks. */
export function splitPemChain(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

function sanNames(cert: X509Certificate): string[] {
  const names = new Set<string>();
  for (const part of (cert.subjectAltName ?? '').split(', ')) {
    if (part.startsWith('DNS:')) names.add(part.slice(4).toLowerCase());
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1];
  if (cn && /^[a-z0-9.-]+$/i.test(cn) && cn.includes('.')) names.add(cn.toLowerCase());
  return [...names].sort();
}

/** Reads the leaf facts of a PEM chain; throws when the chain has no parsable certificate. */
export function readCertificate(chainPem: string): CertificateInfo {
  const blocks = splitPemChain(chainPem);
  const first = blocks[0];
  if (first === undefined) throw new Error('no certificate in PEM');
  const leaf = new X509Certificate(first);
  return {
    names: sanNames(leaf),
    notBefore: Date.parse(leaf.validFrom),
    notAfter: Date.parse(leaf.validTo),
    serial: leaf.serialNumber.toUpperCase(),
    issuer: leaf.issuer.replace(/\n/g, ', '),
    chainLength: blocks.length,
  };
}

/** Why a chain cannot be stored for `names` with `keyPem`, or undefined when it can. */
export function checkIssuedChain(
  chainPem: string,
  keyPem: string,
  names: readonly string[],
  now: number,
): string | undefined {
  const blocks = splitPemChain(chainPem);
  const first = blocks[0];
  if (first === undefined) return 'the CA returned no certificate';
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(first);
  } catch (err) {
    return `the leaf certificate does not parse: ${(err as Error).message}`;
  }
  const covered = new Set(sanNames(leaf));
  const missing = names.filter((n) => !covered.has(n.toLowerCase()));
  if (missing.length > 0) return `the certificate does not cover ${missing.join(', ')}`;
  if (!leaf.checkPrivateKey(createPrivateKey(keyPem)))
    return 'the certificate does not match the private key';
  if (Date.parse(leaf.validTo) <= now) return 'the certificate is already expired';
  // Each certificate must be signed by the next one: a broken chain would fail every client.
  for (let i = 0; i + 1 < blocks.length; i++) {
    const child = new X509Certificate(blocks[i] as string);
    const parent = new X509Certificate(blocks[i + 1] as string);
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey))
      return `certificate ${i} of the chain is not signed by certificate ${i + 1}`;
  }
  return undefined;
}

/** True when the PEM key matches the leaf of the PEM chain. */
export function keyMatchesChain(chainPem: string, keyPem: string): boolean {
  const first = splitPemChain(chainPem)[0];
  if (first === undefined) return false;
  try {
    return new X509Certificate(first).checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

// --- Minimal DER writer for the temporary self-signed certificate (no extra dependency). ---

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const tlv = (tag: number, ...content: Buffer[]): Buffer => {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
};
const seq = (...c: Buffer[]): Buffer => tlv(0x30, ...c);
const oid = (dotted: string): Buffer => {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [40 * (parts[0] ?? 0) + (parts[1] ?? 0)];
  for (const p of parts.slice(2)) {
    const stack: number[] = [p & 0x7f];
    for (let v = p >> 7; v > 0; v >>= 7) stack.unshift((v & 0x7f) | 0x80);
    out.push(...stack);
  }
  return tlv(0x06, Buffer.from(out));
};
const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
const time = (ms: number): Buffer => {
  const iso = new Date(ms).toISOString();
  const digits = iso.slice(0, 19).replace(/[-:T]/g, '');
  // UTCTime until 2049, GeneralizedTime after (RFC 5280 4.1.2.5).
  return new Date(ms).getUTCFullYear() < 2050
    ? tlv(0x17, Buffer.from(`${digits.slice(2)}Z`))
    : tlv(0x18, Buffer.from(`${digits}Z`));
};

/**
 * A self-signed ECDSA certificate for `names` with the given P-256 key PEM, valid from notBefore to
 * notAfter (epoch ms); `organization` marks what it is. Used for the temporary certificate and fakes.
 */
export function createCertificateForKey(
  names: readonly string[],
  keyPem: string,
  notBefore: number,
  notAfter: number,
  organization: string,
): string {
  const privateKey = createPrivateKey(keyPem);
  const publicKey = createPublicKey(privateKey);
  const serial = randomBytes(16);
  // Positive and minimal DER INTEGER: top bit clear, first byte never zero.
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x01;
  const ecdsaSha256 = seq(oid('1.2.840.10045.4.3.2'));
  const cn = (names[0] ?? 'temporary').slice(0, 64);
  const name = seq(
    tlv(0x31, seq(oid('2.5.4.10'), utf8(organization))),
    tlv(0x31, seq(oid('2.5.4.3'), utf8(cn))),
  );
  const san = seq(...names.map((n) => tlv(0x82, Buffer.from(n, 'ascii'))));
  const extensions = tlv(
    0xa3,
    seq(
      seq(oid('2.5.29.19'), tlv(0x01, Buffer.from([0xff])), tlv(0x04, seq())),
      seq(oid('2.5.29.17'), tlv(0x04, san)),
    ),
  );
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Buffer.from([2]))),
    tlv(0x02, serial),
    ecdsaSha256,
    name,
    seq(time(notBefore), time(notAfter)),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    extensions,
  );
  const signature = sign('sha256', tbs, { key: privateKey, dsaEncoding: 'der' });
  const der = seq(tbs, ecdsaSha256, tlv(0x03, Buffer.from([0]), signature));
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN CERTIFICATE-----\n${b64.trimEnd()}\n-----END CERTIFICATE-----\n`;
}

/** Organization of the temporary certificate: how a human (and the store) can tell it apart. */
export const TEMPORARY_ORGANIZATION = 'extsvc-acme TEMPORARY self-signed';

/** A temporary self-signed certificate and its key, so a TLS listener can start before the first issue. */
export function createSelfSigned(
  names: readonly string[],
  now: number,
  validityMs: number,
): { chainPem: string; keyPem: string } {
  const keyPem = generatePrivateKey('ecdsa-p256');
  return {
    chainPem: createCertificateForKey(names, keyPem, now - 60_000, now + validityMs, TEMPORARY_ORGANIZATION),
    keyPem,
  };
}
