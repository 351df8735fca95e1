import { readFileSync } from 'node:fs';
import type { ConfigProblem } from '@extsvc/common/errors';
import { errorMessage } from '@extsvc/common/errors';
import { pathsFingerprint, watchPaths, type Watcher } from '@extsvc/common/watch';
import { type HostDefaults, type HostsFileResult, type ParsedHost, parseHostsText } from './host.ts';

/** Where Hosts come from: a file in file mode, the Kubernetes API in Kubernetes mode (issue 6). */
export interface HostSource {
  /** Reads the current Hosts; `error` when they cannot be read at all (per-Host problems are in the Hosts). */
  load(): HostsFileResult;
  /**
   * Calls `onChange` with every new readable set of Hosts and `onError` when an update cannot be
   * read (the caller keeps the last good set). Returns a watcher to close.
   */
  watch(
    onChange: (hosts: readonly ParsedHost[]) => Promise<void>,
    onError: (problems: readonly ConfigProblem[]) => void,
  ): Watcher;
}

/** Hosts from a multi-document YAML file, polled for changes (survives editors and symlink swaps). */
export class FileHostSource implements HostSource {
  readonly #file: string | undefined;
  readonly #defaults: HostDefaults;
  readonly #pollMs: number;
  /** Fingerprint taken before the first read: an edit made while that read is applied is not lost. */
  #baseline: string | undefined;
  #watching = false;

  /** Without a file there are no Hosts. */
  constructor(file: string | undefined, defaults: HostDefaults, pollMs: number) {
    this.#file = file;
    this.#defaults = defaults;
    this.#pollMs = pollMs;
  }

  load(): HostsFileResult {
    if (this.#file === undefined) return { kind: 'ok', hosts: [], ignored: 0 };
    if (!this.#watching) this.#baseline = pathsFingerprint([this.#file]);
    let text: string;
    try {
      text = readFileSync(this.#file, 'utf8');
    } catch (err) {
      return {
        kind: 'error',
        problems: [{ field: this.#file, message: `cannot read: ${errorMessage(err)}` }],
      };
    }
    return parseHostsText(text, this.#file, this.#defaults);
  }

  watch(
    onChange: (hosts: readonly ParsedHost[]) => Promise<void>,
    onError: (problems: readonly ConfigProblem[]) => void,
  ): Watcher {
    if (this.#file === undefined) return { close: async () => undefined };
    this.#watching = true;
    return watchPaths(
      [this.#file],
      this.#pollMs,
      async () => {
        const next = this.load();
        if (next.kind === 'error') onError(next.problems);
        else await onChange(next.hosts);
      },
      this.#baseline !== undefined ? { baseline: this.#baseline } : {},
    );
  }
}
