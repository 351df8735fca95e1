import { createHash } from 'node:crypto';
import type { V1ConfigMap } from '@kubernetes/client-node';
import type { ChallengeStore, PendingChallenge } from '../stores.ts';
import {
  ANNOTATION_PREFIX,
  FIELD_MANAGER,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  type KubeApis,
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

/**
 * HTTP-01 tokens in ConfigMaps of acme's own namespace, one per token, so whichever replica Envoy
 * picks answers the CA: the leader writes them, every replica reads them. A key authorization is
 * public by design (the CA fetches it over plain HTTP), so a ConfigMap, not a Secret.
 */
export class ConfigMapChallengeStore implements ChallengeStore {
  readonly #apis: KubeApis;
  readonly #namespace: string;

  constructor(apis: KubeApis, namespace: string) {
    this.#apis = apis;
    this.#namespace = namespace;
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
  }

  async get(token: string, now: number): Promise<PendingChallenge | undefined> {
    let cm: V1ConfigMap;
    try {
      cm = await this.#apis.core.readNamespacedConfigMap({
        name: challengeObjectName(token),
        namespace: this.#namespace,
      });
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
    const d = cm.data ?? {};
    const expiresAt = Date.parse(d['expiresAt'] ?? '');
    if (d['token'] !== token || !d['keyAuthorization'] || !d['name'] || !(expiresAt > now)) return undefined;
    return { token, keyAuthorization: d['keyAuthorization'], name: d['name'], expiresAt };
  }

  async remove(token: string): Promise<void> {
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
