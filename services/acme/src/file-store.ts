import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readFile, readdir, readlink, rename, rm, symlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { acquireFileLock } from './file-lock.ts';
import type { SecretRef } from './host.ts';
import type {
  AccountStore,
  CertificateMeta,
  CertificateStore,
  FailureRecord,
  IssueLock,
  StoredAccount,
  StoredCertificate,
} from './stores.ts';

const DATA = '..data';
/** The versions this store creates: `..<timestamp>-<random>`, in the secret's own directory. */
const VERSION = /^\.\.[0-9TZ]+-[0-9a-f]{8}$/;

/** Writes a file atomically: temp file in the same directory, fsync, rename over the target. */
export async function writeFileAtomic(path: string, content: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const fh = await open(tmp, constants.O_CREAT | constants.O_WRONLY | constants.O_EXCL, mode);
  try {
    await fh.writeFile(content);
    await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The Envoy SDS name of a tlsSecret: `namespace/name` (file mode). */
export function sdsSecretName(secret: SecretRef): string {
  return `${secret.namespace}/${secret.name}`;
}

/**
 * Renders the Envoy SDS file of one tlsSecret. The certificate files are symlinks through `..data`,
 * swapped with one rename; `watched_directory` makes Envoy reread the pair on that move and check
 * that cert and key were read consistently (Envoy docs, "Example three" of the secret page).
 */
export function renderSdsYaml(secret: SecretRef, dir: string): string {
  return [
    'resources:',
    '  - "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
    `    name: ${JSON.stringify(sdsSecretName(secret))}`,
    '    tls_certificate:',
    `      certificate_chain: { filename: ${JSON.stringify(join(dir, 'tls.crt'))} }`,
    `      private_key: { filename: ${JSON.stringify(join(dir, 'tls.key'))} }`,
    `      watched_directory: { path: ${JSON.stringify(dir)} }`,
    '',
  ].join('\n');
}

/** meta.json's content; a missing or corrupt one only loses the temporary flag (the certificate itself is checked). */
function parseMeta(text: string | undefined): CertificateMeta {
  if (text !== undefined) {
    try {
      return JSON.parse(text) as CertificateMeta;
    } catch {
      // fall through
    }
  }
  return { temporary: false, names: [], issuedAt: '' };
}

/**
 * File-mode certificate store. Layout per tlsSecret, the Kubernetes volume layout (atomic swaps):
 *
 *   <root>/<namespace>/<name>/..<version>/{tls.crt,tls.key,meta.json}
 *   <root>/<namespace>/<name>/..data -> ..<version>     (replaced with one rename)
 *   <root>/<namespace>/<name>/{tls.crt,tls.key,meta.json} -> ..data/<file>
 *   <root>/<namespace>/<name>/sds.yaml                   (Envoy SDS, paths as Envoy sees them)
 */
export class DirectoryCertificateStore implements CertificateStore {
  readonly #root: string;
  readonly #envoyRoot: string;
  readonly #keyMode: number;

  /**
   * `envoyRoot` is the same directory as Envoy mounts it (defaults to `root`); `keyMode` the mode of
   * tls.key (0600 by default; 0640 when Envoy reads it through a shared group).
   */
  constructor(root: string, envoyRoot?: string, keyMode = 0o600) {
    this.#root = resolve(root);
    this.#envoyRoot = envoyRoot ?? this.#root;
    this.#keyMode = keyMode;
  }

  /** Directory of one tlsSecret. */
  dir(secret: SecretRef): string {
    return join(this.#root, secret.namespace, secret.name);
  }

  /** Path of the SDS file of one tlsSecret (as written here). */
  sdsPath(secret: SecretRef): string {
    return join(this.dir(secret), 'sds.yaml');
  }

  async read(secret: SecretRef): Promise<StoredCertificate | undefined> {
    const dir = this.dir(secret);
    // Resolve ..data once so the three files come from the same version even during a swap. A writer
    // (this process or another instance on the directory) removes the old version right after the swap:
    // a version gone between readlink and read is read again from the new ..data, never "absent".
    for (let attempt = 0; attempt < 5; attempt++) {
      let version: string;
      try {
        version = await readlink(join(dir, DATA));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
      // A `..data` this store did not make (pointing out of the directory) is no certificate of ours:
      // absent, so the next write replaces it.
      if (!VERSION.test(version)) return undefined;
      const base = join(dir, version);
      const [chainPem, keyPem, metaText] = await Promise.all([
        readOptional(join(base, 'tls.crt')),
        readOptional(join(base, 'tls.key')),
        readOptional(join(base, 'meta.json')),
      ]);
      if (chainPem !== undefined && keyPem !== undefined)
        return { chainPem, keyPem, meta: parseMeta(metaText) };
      if ((await readlink(join(dir, DATA)).catch(() => undefined)) === version) return undefined;
    }
    return undefined;
  }

  /**
   * `<root>/<namespace>/.<name>.lock`: holder pid, host and expiry (file-lock.ts). Beside the
   * secret's directory, not in it: Envoy's `watched_directory` reloads on every move into that one.
   */
  async lock(secret: SecretRef, ttlMs: number): Promise<IssueLock> {
    const dir = join(this.#root, secret.namespace);
    await mkdir(dir, { recursive: true });
    return acquireFileLock(join(dir, `.${secret.name}.lock`), ttlMs);
  }

  async readFailure(secret: SecretRef): Promise<FailureRecord | undefined> {
    const text = await readOptional(join(this.dir(secret), 'failure.json'));
    if (text === undefined) return undefined;
    try {
      const f = JSON.parse(text) as FailureRecord;
      return typeof f.failures === 'number' && typeof f.at === 'number' && Array.isArray(f.names)
        ? f
        : undefined;
    } catch {
      return undefined;
    }
  }

  async writeFailure(secret: SecretRef, failure: FailureRecord | undefined): Promise<void> {
    const path = join(this.dir(secret), 'failure.json');
    if (failure === undefined) await rm(path, { force: true });
    else {
      await mkdir(this.dir(secret), { recursive: true, mode: 0o755 });
      await writeFileAtomic(path, `${JSON.stringify(failure, null, 2)}\n`, 0o644);
    }
  }

  async write(secret: SecretRef, cert: StoredCertificate): Promise<void> {
    const dir = this.dir(secret);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const version = `..${new Date().toISOString().replace(/[-:.]/g, '')}-${randomBytes(4).toString('hex')}`;
    const vdir = join(dir, version);
    await mkdir(vdir, { mode: 0o755 });
    await writeFileAtomic(join(vdir, 'tls.key'), cert.keyPem, this.#keyMode);
    await writeFileAtomic(join(vdir, 'tls.crt'), cert.chainPem, 0o644);
    await writeFileAtomic(join(vdir, 'meta.json'), `${JSON.stringify(cert.meta, null, 2)}\n`, 0o644);
    const tmpLink = join(dir, `..data_tmp-${randomBytes(4).toString('hex')}`);
    await symlink(version, tmpLink);
    await rename(tmpLink, join(dir, DATA));
    for (const f of ['tls.crt', 'tls.key', 'meta.json']) {
      const p = join(dir, f);
      // Only a link to our own `..data/<file>` is kept: a pre-existing link (or file) pointing
      // anywhere else would make Envoy serve, or acme report, what someone else put there.
      const target = await readlink(p).catch(() => undefined);
      if (target === join(DATA, f)) continue;
      const tmp = `${p}.tmp-${randomBytes(4).toString('hex')}`;
      await symlink(join(DATA, f), tmp);
      await rename(tmp, p);
    }
    const envoyDir = join(this.#envoyRoot, secret.namespace, secret.name);
    const sds = renderSdsYaml(secret, envoyDir);
    if ((await readOptional(this.sdsPath(secret))) !== sds)
      await writeFileAtomic(this.sdsPath(secret), sds, 0o644);
    // Old versions (and leftovers of a crash between mkdir and the swap) are removed last.
    for (const entry of await readdir(dir)) {
      if (entry.startsWith('..') && entry !== DATA && entry !== version)
        await rm(join(dir, entry), { recursive: true, force: true });
      else if (entry.includes('.tmp-')) await rm(join(dir, entry), { force: true });
    }
  }
}

/**
 * File-mode account store: `<root>/<id>/user.key` (PEM, 0600) and `account.json` (URL, 0600) in a
 * 0700 directory. A key that exists but cannot be read is an error, never silently regenerated.
 */
export class FileAccountStore implements AccountStore {
  readonly #root: string;
  constructor(root: string) {
    this.#root = resolve(root);
  }

  async load(id: string): Promise<StoredAccount | undefined> {
    const dir = join(this.#root, id);
    const keyPem = await readOptional(join(dir, 'user.key'));
    if (keyPem === undefined) return undefined;
    const info = await readOptional(join(dir, 'account.json'));
    let parsed: { accountUrl?: string; directoryUrl?: string; keyId?: string } = {};
    if (info !== undefined) {
      try {
        parsed = JSON.parse(info) as typeof parsed;
      } catch {
        // Without a readable URL the account is found again with onlyReturnExisting.
      }
    }
    return {
      keyPem,
      ...(typeof parsed.accountUrl === 'string' ? { accountUrl: parsed.accountUrl } : {}),
      ...(typeof parsed.directoryUrl === 'string' ? { directoryUrl: parsed.directoryUrl } : {}),
      ...(typeof parsed.keyId === 'string' ? { keyId: parsed.keyId } : {}),
    };
  }

  async save(id: string, account: StoredAccount): Promise<void> {
    const dir = join(this.#root, id);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const current = await readOptional(join(dir, 'user.key'));
    if (current !== account.keyPem) await writeFileAtomic(join(dir, 'user.key'), account.keyPem, 0o600);
    const info = { accountUrl: account.accountUrl, directoryUrl: account.directoryUrl, keyId: account.keyId };
    await writeFileAtomic(join(dir, 'account.json'), `${JSON.stringify(info, null, 2)}\n`, 0o600);
  }
}
