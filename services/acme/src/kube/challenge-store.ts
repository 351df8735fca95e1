import { createHash } from 'node:crypto';
import {
  type Informer,
  type KubernetesListObject,
  type V1ConfigMap,
  makeInformer,
} from '@kubernetes/client-node';
import type { Logger } from '@extsvc/common/logger';
import type { ChallengeStore, PendingChallenge } from '../stores.ts';
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
import { KubeStoreError } from './secret-store.ts';

/** Label on challenge ConfigMaps (list them with `-l acme.extsvc.dev/challenge=true`). */
export const CHALLENGE_LABEL = `${ANNOTATION_PREFIX}challenge`;

/** Name of the ConfigMap holding `token` (tokens are base64url: not valid object names as they are). */
export function challengeObjectName(token: string): string {
  return `acme-challenge-${createHash('sha256').update(token).digest('hex').slice(0, 40)}`;
}

function pendingOf(cm: V1ConfigMap): PendingChallenge | undefined {
  const d = cm.data ?? {};
  const expiresAt = Date.parse(d['expiresAt'] ?? '');
  const token = d['token'];
  if (!token || !d['keyAuthorization'] || !d['name'] || !Number.isFinite(expiresAt)) return undefined;
  // The object name is derived from the token: a ConfigMap whose name does not match is not ours.
  if (cm.metadata?.name !== challengeObjectName(token)) return undefined;
  return { token, keyAuthorization: d['keyAuthorization'], name: d['name'], expiresAt };
}

/** Options of the ConfigMap challenge store. */
export interface ConfigMapChallengeStoreOptions {
  readonly logger?: Logger;
  /** How long put() waits for its own write to arrive through the watch, ms (default 10 s). */
  readonly visibleTimeoutMs?: number;
}

/**
 * HTTP-01 tokens in ConfigMaps of acme's own namespace, one per token, so whichever replica Envoy
 * picks answers the CA: the leader writes them, every replica reads them. A key authorization is
 * public by design (the CA fetches it over plain HTTP), so a ConfigMap, not a Secret.
 *
 * Lookups are answered from a local index kept by a label-selected watch (informer), never by a
 * read per request: the challenge route is public, and one API read per unknown token would let
 * anyone spend acme's API budget (issue 18).
 */
export class ConfigMapChallengeStore implements ChallengeStore {
  readonly #apis: KubeApis;
  readonly #namespace: string;
  readonly #log: Logger | undefined;
  readonly #visibleTimeoutMs: number;
  readonly #index = new Map<string, PendingChallenge>();
  readonly #waiters = new Map<string, Set<() => void>>();
  #informer: Informer<V1ConfigMap> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #closed = false;
  #synced = false;

  constructor(apis: KubeApis, namespace: string, opts: ConfigMapChallengeStoreOptions = {}) {
    this.#apis = apis;
    this.#namespace = namespace;
    this.#log = opts.logger;
    this.#visibleTimeoutMs = opts.visibleTimeoutMs ?? 10_000;
  }

  /** True once the watch has listed the pending tokens. */
  get synced(): boolean {
    return this.#synced;
  }

  /** Number of pending tokens in the local index. */
  get size(): number {
    return this.#index.size;
  }

  /** Lists and watches the challenge ConfigMaps; resolves after the first list. */
  async start(): Promise<void> {
    const ns = this.#namespace;
    const selector = `${CHALLENGE_LABEL}=true`;
    const list = async (): Promise<KubernetesListObject<V1ConfigMap>> =>
      await this.#apis.core.listNamespacedConfigMap({ namespace: ns, labelSelector: selector });
    const inf = makeInformer<V1ConfigMap>(
      this.#apis.kubeConfig,
      `/api/v1/namespaces/${ns}/configmaps`,
      list,
      selector,
    );
    const upsert = (cm: V1ConfigMap): void => {
      const c = pendingOf(cm);
      if (!c) return;
      this.#index.set(c.token, c);
      const ws = this.#waiters.get(c.token);
      if (ws) for (const w of ws) w();
    };
    const drop = (cm: V1ConfigMap): void => {
      const token = cm.data?.['token'];
      if (token) this.#index.delete(token);
    };
    inf.on('add', upsert);
    inf.on('update', upsert);
    inf.on('delete', drop);
    let delay = 500;
    inf.on('error', (err: unknown) => {
      if (this.#closed) return;
      this.#log?.warn({ err: apiErrorMessage(err) }, 'challenge ConfigMap watch failed; restarting');
      this.#retry = setTimeout(() => void inf.start().catch(() => undefined), delay);
      this.#retry.unref();
      delay = Math.min(delay * 2, 30_000);
    });
    inf.on('connect', () => (delay = 500));
    this.#informer = inf;
    await inf.start();
    this.#synced = true;
  }

  /** Stops the watch. */
  async stop(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    await this.#informer?.stop();
  }

  async put(c: PendingChallenge): Promise<void> {
    const name = challengeObjectName(c.token);
    const body: V1ConfigMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name,
        namespace: this.#namespace,
        labels: { [MANAGED_BY_LABEL]: MANAGED_BY, [CHALLENGE_LABEL]: 'true' },
      },
      data: {
        token: c.token,
        keyAuthorization: c.keyAuthorization,
        name: c.name,
        expiresAt: new Date(c.expiresAt).toISOString(),
      },
    };
    try {
      await this.#apis.core.patchNamespacedConfigMap(
        { name, namespace: this.#namespace, body, fieldManager: FIELD_MANAGER, force: true },
        applyPatch,
      );
    } catch (err) {
      throw new KubeStoreError('ERR_KUBE_API', `storing challenge ConfigMap ${this.#namespace}/${name}`, err);
    }
    // Other replicas answer from their own watch: wait until ours delivered the token, so the CA
    // is not asked before the token can be served (watches of all replicas see it about together).
    if (this.#informer && !this.#index.has(c.token)) await this.#visible(c.token);
  }

  #visible(token: string): Promise<void> {
    return new Promise((resolve) => {
      const ws = this.#waiters.get(token) ?? new Set<() => void>();
      this.#waiters.set(token, ws);
      const done = (): void => {
        clearTimeout(t);
        ws.delete(done);
        if (ws.size === 0) this.#waiters.delete(token);
        resolve();
      };
      const t = setTimeout(() => {
        this.#log?.warn('challenge ConfigMap not seen through the watch in time; continuing');
        done();
      }, this.#visibleTimeoutMs);
      t.unref();
      ws.add(done);
      if (this.#index.has(token)) done();
    });
  }

  async get(token: string, now: number): Promise<PendingChallenge | undefined> {
    const c = this.#index.get(token);
    return c && c.expiresAt > now ? c : undefined;
  }

  async remove(token: string): Promise<void> {
    this.#index.delete(token);
    try {
      await this.#apis.core.deleteNamespacedConfigMap({
        name: challengeObjectName(token),
        namespace: this.#namespace,
      });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }

  /** Deletes challenge ConfigMaps past their expiry (left by a replica that died mid-order); returns how many. */
  async sweep(now: number): Promise<number> {
    const list = await this.#apis.core.listNamespacedConfigMap({
      namespace: this.#namespace,
      labelSelector: `${CHALLENGE_LABEL}=true`,
    });
    let n = 0;
    for (const cm of list.items) {
      const exp = Date.parse(cm.data?.['expiresAt'] ?? '');
      if (Number.isFinite(exp) && exp <= now && cm.metadata?.name) {
        await this.#apis.core
          .deleteNamespacedConfigMap({ name: cm.metadata.name, namespace: this.#namespace })
          .catch(() => undefined);
        n += 1;
      }
    }
    return n;
  }
}
