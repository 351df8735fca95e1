/** One configuration problem, located by its field (flag, env var, or file path + field path). */
export interface ConfigProblem {
  /** Where the problem is: `--grpc-port`, `GRPC_PORT`, or `policy.yaml: rules[2].path`. */
  readonly field: string;
  /** What is wrong, without secret values. */
  readonly message: string;
}

/** Stable error codes shared by the services' common runtime. */
export type CommonErrorCode = 'ERR_CONFIG' | 'ERR_LISTEN' | 'ERR_SHUTDOWN';

/** Invalid configuration: carries every problem found, not just the first. Exit code 2 at start. */
export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG' as const;
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[], options?: { cause?: unknown }) {
    super(formatProblems(problems), options);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Renders problems on one line: `field: message; field: message`. */
export function formatProblems(problems: readonly ConfigProblem[]): string {
  return problems.map((p) => `${p.field}: ${p.message}`).join('; ');
}

/** Collects problems during validation, then throws them together. */
export class ProblemCollector {
  readonly problems: ConfigProblem[] = [];
  /** Records a problem at `field`. */
  add(field: string, message: string): void {
    this.problems.push({ field, message });
  }
  /** Throws a ConfigError when any problem was recorded. */
  throwIfAny(): void {
    if (this.problems.length > 0) throw new ConfigError(this.problems);
  }
}

/** Message of any thrown value, for logs (never includes stack traces for clients). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
