/** Readiness of one dependency or stage (config loaded, Redis reachable...). */
export interface ComponentState {
  readonly ready: boolean;
  /** Why not ready, for /readyz and diagnostics (never secrets). */
  readonly detail?: string;
}

type Listener = (serving: boolean) => void;

/**
 * Readiness as a map of components, as in envoyproxy/ratelimit: the service is ready when every
 * component is ready and it is not draining. Listeners (gRPC health Watch) hear every change.
 */
export class HealthState {
  readonly #components = new Map<string, ComponentState>();
  readonly #listeners = new Set<Listener>();
  #draining = false;
  readonly startedAt = Date.now();

  /** Sets a component's state (creates it if new). */
  set(name: string, ready: boolean, detail?: string): void {
    const before = this.serving;
    this.#components.set(name, detail === undefined ? { ready } : { ready, detail });
    this.#notify(before);
  }

  /** Marks the service as draining: readiness turns NOT_SERVING for good. */
  drain(): void {
    const before = this.serving;
    this.#draining = true;
    this.#notify(before);
  }

  /** True while draining. */
  get draining(): boolean {
    return this.#draining;
  }

  /** True when all components are ready and the service is not draining. */
  get serving(): boolean {
    if (this.#draining) return false;
    for (const c of this.#components.values()) if (!c.ready) return false;
    return true;
  }

  /** A snapshot for /readyz and /diag. */
  snapshot(): { serving: boolean; draining: boolean; components: Record<string, ComponentState> } {
    return {
      serving: this.serving,
      draining: this.#draining,
      components: Object.fromEntries(this.#components),
    };
  }

  /** Subscribes to serving changes; returns an unsubscribe function. */
  onChange(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #notify(before: boolean): void {
    const now = this.serving;
    if (now !== before) for (const l of this.#listeners) l(now);
  }
}
