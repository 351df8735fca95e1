import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import type { SecretRef } from '../host.ts';
import type { AccountStore, CertificateStore, StoredAccount, StoredCertificate } from '../stores.ts';
import {
  ANNOTATION_PREFIX,
  FIELD_MANAGER,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  type KubeApis,
  apiErrorMessage,
  applyPatch,
  statusOf,
} from './api.ts';

/** Secret annotations written with a certificate. */
export const SECRET_ANNOTATIONS = {
  issuer: `${ANNOTATION_PREFIX}issuer`,
  names: `${ANNOTATION_PREFIX}names`,
  notAfter: `${ANNOTATION_PREFIX}not-after`,
  issuedAt: `${ANNOTATION_PREFIX}issued-at`,
  temporary: `${ANNOTATION_PREFIX}temporary`,
  accountUrl: `${ANNOTATION_PREFIX}account-url`,
  directoryUrl: `${ANNOTATION_PREFIX}directory-url`,
} as const;

/** Stable codes of Kubernetes store failures. */
export type KubeStoreErrorCode =
  /** The Secret belongs to another manager (cert-manager, Helm, another field manager): never overwritten. */
  | 'ERR_SECRET_FOREIGN'
  /** The API refused or failed the request (RBAC, validation, unreachable). */
  | 'ERR_KUBE_API'
  /** Optimistic-concurrency conflicts did not settle after the allowed retries. */
  | 'ERR_KUBE_CONFLICT';

/** A Kubernetes store failure; the message is safe for Host status (no key material). */
export class KubeStoreError extends Error {
  readonly code: KubeStoreErrorCode;
  constructor(code: KubeStoreErrorCode, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'KubeStoreError';
    this.code = code;
  }
}

/** Secret annotation: "true" lets acme take over a Secret written by another field manager. */
export const ADOPT_ANNOTATION = `${ANNOTATION_PREFIX}adopt`;

/** Which Secrets written by someone else acme may take over (explicit opt-in only). */
export interface AdoptionPolicy {
  /**
   * Field managers whose certificate Secrets acme may take over (`amb-sidecar` for Edge Stack,
   * `kubectl-create` for `kubectl create secret tls`). Default none.
   */
  readonly fieldManagers?: readonly string[];
}

/**
 * Who else manages `secret`, or undefined when acme may write it: absent, created by acme, or an
 * empty placeholder. Signals, in order: a managed-by label of another tool (Helm sets "Helm"), Helm's
 * release annotations, cert-manager annotations or owner (a Certificate), another field manager that
 * owns the certificate data. Only the last one can be waived, and only by an explicit opt-in: the
 * field manager listed in `adopt.fieldManagers`, or the Secret annotated `acme.extsvc.dev/adopt: "true"`
 * (by whoever may write it). Helm, cert-manager and owned Secrets are never taken over.
 */
export function foreignManager(secret: V1Secret, adopt: AdoptionPolicy = {}): string | undefined {
  const labels = secret.metadata?.labels ?? {};
  const annotations = secret.metadata?.annotations ?? {};
  const managedBy = labels[MANAGED_BY_LABEL];
  if (managedBy !== undefined && managedBy !== MANAGED_BY) return managedBy;
  if (annotations['meta.helm.sh/release-name'] !== undefined) return 'Helm';
  if (Object.keys(annotations).some((k) => k.startsWith('cert-manager.io/'))) return 'cert-manager';
  const owner = (secret.metadata?.ownerReferences ?? []).find((o) => o.kind !== 'Host');
  if (owner) return `${owner.kind} ${owner.name} (${owner.apiVersion})`;
  if (managedBy === MANAGED_BY) return undefined;
  if (annotations[ADOPT_ANNOTATION] === 'true') return undefined;
  const adoptable = adopt.fieldManagers ?? [];
  for (const f of secret.metadata?.managedFields ?? []) {
    if (f.manager === FIELD_MANAGER || f.manager === undefined || adoptable.includes(f.manager)) continue;
    const data = (f.fieldsV1 as { 'f:data'?: Record<string, unknown> } | undefined)?.['f:data'];
    if (data && ('f:tls.crt' in data || 'f:tls.key' in data)) return `field manager ${f.manager}`;
  }
  return undefined;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined): string | undefined =>
  s === undefined ? undefined : Buffer.from(s, 'base64').toString('utf8');

/** Hooks for tests and metrics. */
export interface SecretStoreHooks {
  /** Called after the Secret was read and before it is written (a test makes a concurrent writer here). */
  readonly beforeWrite?: (secret: SecretRef, attempt: number) => Promise<void>;
  /** Called for every conflict (HTTP 409) that is retried. */
  readonly onConflict?: (secret: SecretRef) => void;
  /** Called after a certificate was written (temporary or issued). */
  readonly onWritten?: (secret: SecretRef, temporary: boolean) => void;
}

/**
 * TLS certificates in `kubernetes.io/tls` Secrets, written with server-side apply under the
 * FIELD_MANAGER field manager (never read-modify-write of the whole object). Each write carries the
 * resourceVersion that the ownership check saw, so a Secret taken over in between is a 409, re-read
 * and re-checked (bounded retries), never overwritten blindly.
 */
export class KubeCertificateStore implements CertificateStore {
  readonly #apis: KubeApis;
  readonly #hooks: SecretStoreHooks;
  readonly #maxAttempts: number;
  /** resourceVersion last read or written per Secret, to tell our own writes from others' changes. */
  readonly #seen = new Map<string, string>();

  readonly #adopt: AdoptionPolicy;

  constructor(
    apis: KubeApis,
    opts: { hooks?: SecretStoreHooks; maxAttempts?: number; adopt?: AdoptionPolicy } = {},
  ) {
    this.#apis = apis;
    this.#hooks = opts.hooks ?? {};
    this.#maxAttempts = opts.maxAttempts ?? 5;
    this.#adopt = opts.adopt ?? {};
  }

  async #get(ref: SecretRef): Promise<V1Secret | undefined> {
    try {
      return await this.#apis.core.readNamespacedSecret({ name: ref.name, namespace: ref.namespace });
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw new KubeStoreError(
        'ERR_KUBE_API',
        `reading Secret ${ref.namespace}/${ref.name}: ${apiErrorMessage(err)}`,
        err,
      );
    }
  }

  #check(ref: SecretRef, s: V1Secret): void {
    const other = foreignManager(s, this.#adopt);
    if (other !== undefined)
      throw new KubeStoreError(
        'ERR_SECRET_FOREIGN',
        other.startsWith('field manager ')
          ? `tlsSecret ${ref.namespace}/${ref.name} is managed by ${other}; acme leaves it alone (to hand it over: annotate the Secret ${ADOPT_ANNOTATION}=true or list the manager in --adopt-field-managers)`
          : `tlsSecret ${ref.namespace}/${ref.name} is managed by ${other}; acme leaves it alone (delete it, or point the Host at another Secret)`,
      );
    if (s.type !== undefined && s.type !== 'kubernetes.io/tls')
      throw new KubeStoreError(
        'ERR_SECRET_FOREIGN',
        `tlsSecret ${ref.namespace}/${ref.name} has type ${s.type}, not kubernetes.io/tls; acme leaves it alone`,
      );
  }

  /**
   * Proves the certificate write would be accepted: the same ownership check, then a server-side
   * dry run (`dryRun=All`) of the write acme would do, so RBAC, admission and validation all answer
   * without anything being stored.
   */
  async probeWrite(ref: SecretRef): Promise<void> {
    const current = await this.#get(ref);
    if (current) this.#check(ref, current);
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: { name: ref.name, namespace: ref.namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY } },
      data: { 'tls.crt': '', 'tls.key': '' },
    };
    try {
      if (current)
        await this.#apis.core.patchNamespacedSecret(
          {
            name: ref.name,
            namespace: ref.namespace,
            body,
            fieldManager: FIELD_MANAGER,
            force: true,
            dryRun: 'All',
          },
          applyPatch,
        );
      else
        await this.#apis.core.createNamespacedSecret({
          namespace: ref.namespace,
          body,
          fieldManager: FIELD_MANAGER,
          dryRun: 'All',
        });
    } catch (err) {
      // A Secret created meanwhile is a write we would retry (409 on the dry-run create): fine.
      if (statusOf(err) === 409) return;
      throw new KubeStoreError(
        'ERR_KUBE_API',
        `cannot write Secret ${ref.namespace}/${ref.name}: ${apiErrorMessage(err)}`,
        err,
      );
    }
  }

  /** Why acme must not write the Secret (another manager owns it), or undefined when it may (or it is absent). */
  async refusal(ref: SecretRef): Promise<string | undefined> {
    const s = await this.#get(ref);
    if (!s) return undefined;
    try {
      this.#check(ref, s);
      return undefined;
    } catch (err) {
      if (err instanceof KubeStoreError) return err.message;
      throw err;
    }
  }

  async exists(ref: SecretRef): Promise<boolean> {
    const s = await this.#get(ref);
    return s !== undefined && s.data?.['tls.crt'] !== undefined && s.data['tls.key'] !== undefined;
  }

  /** True when the Secret changed since acme last read or wrote it (deleted, or written by someone else). */
  async changedSinceSeen(ref: SecretRef): Promise<boolean> {
    const key = `${ref.namespace}/${ref.name}`;
    const seen = this.#seen.get(key);
    if (seen === undefined) return false;
    const s = await this.#get(ref);
    return s?.metadata?.resourceVersion !== seen;
  }

  async read(ref: SecretRef): Promise<StoredCertificate | undefined> {
    const s = await this.#get(ref);
    const key = `${ref.namespace}/${ref.name}`;
    if (!s) {
      this.#seen.delete(key);
      return undefined;
    }
    this.#check(ref, s);
    if (s.metadata?.resourceVersion) this.#seen.set(key, s.metadata.resourceVersion);
    const chainPem = unb64(s.data?.['tls.crt']);
    const keyPem = unb64(s.data?.['tls.key']);
    if (!chainPem || !keyPem) return undefined;
    const a = s.metadata?.annotations ?? {};
    const names = (a[SECRET_ANNOTATIONS.names] ?? '').split(',').filter((n) => n !== '');
    const authority = a[SECRET_ANNOTATIONS.issuer];
    return {
      chainPem,
      keyPem,
      meta: {
        temporary: a[SECRET_ANNOTATIONS.temporary] === 'true',
        names,
        ...(authority ? { authority } : {}),
        issuedAt: a[SECRET_ANNOTATIONS.issuedAt] ?? s.metadata?.creationTimestamp?.toISOString() ?? '',
      },
    };
  }

  async write(ref: SecretRef, cert: StoredCertificate): Promise<void> {
    const key = `${ref.namespace}/${ref.name}`;
    for (let attempt = 1; ; attempt++) {
      const current = await this.#get(ref);
      if (current) this.#check(ref, current);
      await this.#hooks.beforeWrite?.(ref, attempt);
      const notAfter = notAfterOf(cert.chainPem);
      const body: V1Secret = {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'kubernetes.io/tls',
        metadata: {
          name: ref.name,
          namespace: ref.namespace,
          // Precondition: the object we checked, or (absent) one that must still not exist.
          ...(current?.metadata?.resourceVersion
            ? { resourceVersion: current.metadata.resourceVersion }
            : {}),
          labels: { [MANAGED_BY_LABEL]: MANAGED_BY },
          annotations: {
            [SECRET_ANNOTATIONS.names]: cert.meta.names.join(','),
            [SECRET_ANNOTATIONS.temporary]: String(cert.meta.temporary),
            [SECRET_ANNOTATIONS.issuedAt]: cert.meta.issuedAt,
            ...(cert.meta.authority ? { [SECRET_ANNOTATIONS.issuer]: cert.meta.authority } : {}),
            ...(notAfter ? { [SECRET_ANNOTATIONS.notAfter]: notAfter } : {}),
          },
        },
        data: { 'tls.crt': b64(cert.chainPem), 'tls.key': b64(cert.keyPem) },
      };
      try {
        const written = current
          ? await this.#apis.core.patchNamespacedSecret(
              { name: ref.name, namespace: ref.namespace, body, fieldManager: FIELD_MANAGER, force: true },
              applyPatch,
            )
          : await this.#apis.core.createNamespacedSecret({
              namespace: ref.namespace,
              body,
              fieldManager: FIELD_MANAGER,
            });
        if (written.metadata?.resourceVersion) this.#seen.set(key, written.metadata.resourceVersion);
        this.#hooks.onWritten?.(ref, cert.meta.temporary);
        return;
      } catch (err) {
        // 409: changed (or created) since we looked; re-read, re-check ownership, try again.
        if (statusOf(err) === 409 && attempt < this.#maxAttempts) {
          this.#hooks.onConflict?.(ref);
          continue;
        }
        if (statusOf(err) === 409)
          throw new KubeStoreError(
            'ERR_KUBE_CONFLICT',
            `writing Secret ${key}: still conflicting after ${attempt} attempts`,
            err,
          );
        throw new KubeStoreError('ERR_KUBE_API', `writing Secret ${key}: ${apiErrorMessage(err)}`, err);
      }
    }
  }
}

function notAfterOf(chainPem: string): string | undefined {
  const m = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(chainPem);
  if (!m) return undefined;
  try {
    return new Date(new X509Certificate(m[0]).validTo).toISOString();
  } catch {
    return undefined;
  }
}

/** Where account Secrets without a namespace in their id live. */
export interface AccountStoreOptions {
  /**
   * Namespace of ids without one (acme's own namespace); also where earlier versions kept derived
   * accounts, still read when the Host's namespace has none.
   */
  readonly defaultNamespace: string;
}

/**
 * ACME account keys in Opaque Secrets, Edge Stack's layout: data `user.key` PEM; the account URL and
 * directory in annotations. A key read from a Secret is written back byte for byte (Edge Stack's
 * PKCS#8 RSA stays PKCS#8); a new key is written SEC1 "EC PRIVATE KEY" (RSA: PKCS#1). Ids come from
 * the issuer: `<namespace>.<name>` for a Host's privateKeySecret (in Kubernetes mode also the
 * derived `NameEncode(authority)[--NameEncode(email)]` in the Host's namespace), else a bare name
 * in `defaultNamespace`.
 */
export class KubeAccountStore implements AccountStore {
  readonly #apis: KubeApis;
  readonly #opts: AccountStoreOptions;
  /** `user.key` exactly as read per id, so an unchanged key is written back in its own encoding. */
  readonly #asRead = new Map<string, string>();

  constructor(apis: KubeApis, opts: AccountStoreOptions) {
    this.#apis = apis;
    this.#opts = opts;
  }

  /** The Secret holding account `id`. */
  secretFor(id: string): SecretRef {
    if (/^https?-3a-2f-2f/.test(id)) return { namespace: this.#opts.defaultNamespace, name: id };
    const dot = id.indexOf('.');
    if (dot <= 0) return { namespace: this.#opts.defaultNamespace, name: id };
    return { namespace: id.slice(0, dot), name: id.slice(dot + 1) };
  }

  async #read(ref: SecretRef): Promise<V1Secret | undefined> {
    try {
      return await this.#apis.core.readNamespacedSecret({ name: ref.name, namespace: ref.namespace });
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw new KubeStoreError(
        'ERR_KUBE_API',
        `reading account Secret ${ref.namespace}/${ref.name}: ${apiErrorMessage(err)}`,
        err,
      );
    }
  }

  async load(id: string): Promise<StoredAccount | undefined> {
    const ref = this.secretFor(id);
    let s = await this.#read(ref);
    // Earlier versions kept derived accounts in acme's own namespace: reuse such a key (it is
    // written back to the Host's namespace on the next save) rather than register a new account.
    if (!s && ref.namespace !== this.#opts.defaultNamespace && /^https?-3a-2f-2f/.test(ref.name))
      s = await this.#read({ namespace: this.#opts.defaultNamespace, name: ref.name }).catch(() => undefined);
    if (!s) return undefined;
    const pem = unb64(s.data?.['user.key']);
    if (!pem) return undefined;
    this.#asRead.set(id, pem);
    let keyPem: string;
    try {
      keyPem = createPrivateKey(pem).export({ type: 'pkcs8', format: 'pem' }).toString();
    } catch (err) {
      throw new KubeStoreError(
        'ERR_KUBE_API',
        `account Secret ${ref.namespace}/${ref.name}: user.key is not a private key`,
        err,
      );
    }
    const a = s.metadata?.annotations ?? {};
    const accountUrl = a[SECRET_ANNOTATIONS.accountUrl];
    const directoryUrl = a[SECRET_ANNOTATIONS.directoryUrl];
    return { keyPem, ...(accountUrl ? { accountUrl } : {}), ...(directoryUrl ? { directoryUrl } : {}) };
  }

  async save(id: string, account: StoredAccount): Promise<void> {
    const ref = this.secretFor(id);
    const key = createPrivateKey(account.keyPem);
    // The key read from the Secret (Edge Stack's PKCS#8 RSA, say) goes back byte for byte; a new
    // key is written as Edge Stack writes one (SEC1 EC, PKCS#1 RSA).
    const der = (pem: string): string =>
      createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' }).toString('base64');
    const original = this.#asRead.get(id);
    const userKey =
      original !== undefined && der(original) === der(account.keyPem)
        ? original
        : key.export(
            key.asymmetricKeyType === 'ec'
              ? { type: 'sec1', format: 'pem' }
              : { type: 'pkcs1', format: 'pem' },
          );
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: {
        name: ref.name,
        namespace: ref.namespace,
        labels: { [MANAGED_BY_LABEL]: MANAGED_BY },
        annotations: {
          ...(account.accountUrl ? { [SECRET_ANNOTATIONS.accountUrl]: account.accountUrl } : {}),
          ...(account.directoryUrl ? { [SECRET_ANNOTATIONS.directoryUrl]: account.directoryUrl } : {}),
        },
      },
      data: { 'user.key': b64(userKey.toString()) },
    };
    try {
      await this.#apis.core.patchNamespacedSecret(
        { name: ref.name, namespace: ref.namespace, body, fieldManager: FIELD_MANAGER, force: true },
        applyPatch,
      );
    } catch (err) {
      throw new KubeStoreError(
        'ERR_KUBE_API',
        `writing account Secret ${ref.namespace}/${ref.name}: ${apiErrorMessage(err)}`,
        err,
      );
    }
  }
}
