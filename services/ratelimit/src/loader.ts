import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { watchPaths, type Watcher } from '@extsvc/common/watch';
import { RulesError } from './errors.ts';
import { buildRuleSet, type RuleSet, type RulesFile } from './rules.ts';

/** Where rule files come from and how their names (error prefixes) are formed. */
export interface RulesSource {
  /** Directory holding the YAML files. */
  readonly dir: string;
  /** Name prefix: `config.` for the reference runtime layout with RUNTIME_WATCH_ROOT (runtime keys), else ''. */
  readonly namePrefix: string;
  readonly ignoreDotfiles: boolean;
  readonly mergeDomains: boolean;
}

/** Resolves the source from --config-dir, or the reference's RUNTIME_ROOT/SUBDIRECTORY/APPDIRECTORY. */
export function rulesSource(opts: {
  configDir: string | undefined;
  runtimeRoot: string;
  runtimeSubdirectory: string;
  runtimeAppdirectory: string;
  runtimeIgnoredotfiles: boolean;
  mergeDomainConfig: boolean;
  /** As the reference: with RUNTIME_WATCH_ROOT (default) names are runtime keys `config.<file>`, else `<file>`. */
  runtimeWatchRoot?: boolean;
}): RulesSource {
  if (opts.configDir !== undefined)
    return {
      dir: opts.configDir,
      namePrefix: '',
      ignoreDotfiles: opts.runtimeIgnoredotfiles,
      mergeDomains: opts.mergeDomainConfig,
    };
  return {
    dir: join(opts.runtimeRoot, opts.runtimeSubdirectory, opts.runtimeAppdirectory),
    namePrefix: opts.runtimeWatchRoot === false ? '' : opts.runtimeAppdirectory + '.',
    ignoreDotfiles: opts.runtimeIgnoredotfiles,
    mergeDomains: opts.mergeDomainConfig,
  };
}

/**
 * Reads every regular file under the directory (following symlinks), sorted by path. Entries named
 * `..something` (Kubernetes ConfigMap internals such as `..data`) are always skipped, other dotfiles
 * when `ignoreDotfiles`. Names are `<prefix><relative path with / replaced by .>`.
 */
export function readRulesFiles(src: RulesSource): RulesFile[] {
  const out: RulesFile[] = [];
  const walk = (dir: string, rel: string): void => {
    for (const name of readdirSync(dir).sort()) {
      if (name.startsWith('..') || (src.ignoreDotfiles && name.startsWith('.'))) continue;
      const full = join(dir, name);
      let st;
      try {
        st = statSync(full);
      } catch {
        continue;
      }
      const relName = rel === '' ? name : `${rel}.${name}`;
      if (st.isDirectory()) walk(full, relName);
      else if (st.isFile()) out.push({ name: src.namePrefix + relName, content: readFileSync(full, 'utf8') });
    }
  };
  walk(src.dir, '');
  return out;
}

/** Reads and builds the rule set of a source; throws RulesError or a filesystem error. */
export function loadRuleSet(src: RulesSource): RuleSet {
  return buildRuleSet(readRulesFiles(src), { mergeDomains: src.mergeDomains });
}

/** Outcome of one load attempt. */
export type LoadOutcome =
  { readonly kind: 'loaded'; readonly rules: RuleSet } | { readonly kind: 'error'; readonly message: string };

/** Holds the active rule set: the last good one is kept when a reload fails. */
export class RulesHolder {
  #rules: RuleSet | undefined;
  #lastError: string | undefined;
  #loadedAt: number | undefined;
  readonly #src: RulesSource;
  readonly #logger: Logger;
  readonly #onOutcome: (o: LoadOutcome) => void;
  #watcher: Watcher | undefined;

  constructor(src: RulesSource, deps: { logger: Logger; onOutcome: (o: LoadOutcome) => void }) {
    this.#src = src;
    this.#logger = deps.logger.child({ component: 'rules' });
    this.#onOutcome = deps.onOutcome;
  }

  /** The active rule set, undefined until a load succeeded. */
  get rules(): RuleSet | undefined {
    return this.#rules;
  }

  /** Message of the last failed load, cleared by a success. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** Epoch ms of the last successful load. */
  get loadedAt(): number | undefined {
    return this.#loadedAt;
  }

  /** Loads now; on failure keeps the previous rule set. */
  reload(): LoadOutcome {
    let outcome: LoadOutcome;
    try {
      const rules = loadRuleSet(this.#src);
      this.#rules = rules;
      this.#lastError = undefined;
      this.#loadedAt = Date.now();
      outcome = { kind: 'loaded', rules };
      this.#logger.info(
        { files: rules.files.length, domains: [...rules.domains.keys()] },
        'rate limit configuration loaded',
      );
    } catch (err) {
      const message =
        err instanceof RulesError
          ? err.message
          : `error reading ${this.#src.dir}: ${err instanceof Error ? err.message : String(err)}`;
      this.#lastError = message;
      outcome = { kind: 'error', message };
      this.#logger.error(
        { reason: message, keptPrevious: this.#rules !== undefined },
        'rate limit configuration not loaded; keeping the last good one',
      );
    }
    this.#onOutcome(outcome);
    return outcome;
  }

  /** Polls the directory (sees edits, new files and symlink swaps) and reloads on change. */
  watch(intervalMs: number): void {
    this.#watcher ??= watchPaths([this.#src.dir], intervalMs, () => {
      this.reload();
    });
  }

  /** Stops watching. Idempotent. */
  async close(): Promise<void> {
    await this.#watcher?.close();
  }
}
