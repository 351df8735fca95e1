import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';

/** Field manager of every server-side apply acme does. */
export const FIELD_MANAGER = 'extsvc-acme';

/** Prefix of acme's annotations and labels. */
export const ANNOTATION_PREFIX = 'acme.extsvc.dev/';

/** Host annotation: "true" opts a Host in (whatever its ambassador_id), "false" opts it out. */
export const MANAGE_ANNOTATION = `${ANNOTATION_PREFIX}manage`;

/** Label set on every object acme writes (Secrets, challenge ConfigMaps, Mappings). */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';

/** Value of MANAGED_BY_LABEL on acme's objects. */
export const MANAGED_BY = 'extsvc-acme';

/** Emissary's CRD group and version read and written here. */
export const EMISSARY = { group: 'getambassador.io', version: 'v3alpha1' } as const;

/** The API clients acme uses, built from one KubeConfig. */
export interface KubeApis {
  readonly kubeConfig: KubeConfig;
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;
  readonly coordination: CoordinationV1Api;
}

/**
 * Loads a KubeConfig: the file at `path` when given (out of cluster), else client-node's default
 * order (KUBECONFIG, ~/.kube/config, then the in-cluster ServiceAccount).
 */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path !== undefined) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}

/** Builds the API clients from a loaded KubeConfig (in-cluster or a kubeconfig file). */
export function kubeApis(kubeConfig: KubeConfig): KubeApis {
  return {
    kubeConfig,
    core: kubeConfig.makeApiClient(CoreV1Api),
    custom: kubeConfig.makeApiClient(CustomObjectsApi),
    coordination: kubeConfig.makeApiClient(CoordinationV1Api),
  };
}

/** Request options for a server-side apply patch. */
export const applyPatch = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);

/** Request options for a JSON merge patch (the only patch kind custom resources' status takes). */
export const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** HTTP status of an API error, undefined for transport errors. */
export function statusOf(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

/** A short, safe description of an API error (the server's message, never request bodies). */
export function apiErrorMessage(err: unknown): string {
  if (err instanceof ApiException) {
    const body: unknown = typeof err.body === 'string' ? safeJson(err.body) : err.body;
    const msg =
      typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string'
        ? (body as { message: string }).message
        : '';
    return `HTTP ${err.code}${msg ? `: ${msg}` : ''}`;
  }
  return err instanceof Error ? err.message : String(err);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
