import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from 'pino';

/** V8's `gc()` extension with the options it accepts (`--expose-gc`). */
type GcFunction = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

/** What one compaction did: V8 heap committed (`total_heap_size`) before and after, in bytes. */
export interface HeapCompaction {
  /** Committed heap before, bytes. */
  readonly heapBefore: number;
  /** Committed heap after, bytes. */
  readonly heapAfter: number;
  /** Main-thread CPU spent, milliseconds. */
  readonly cpuMs: number;
}

/**
 * Runs V8's memory-reducing full collection once: the `last-resort` flavour of `gc()`, i.e. the
 * collection V8 does on a low-memory notification (several mark-compacts that release empty pages,
 * flush unused bytecode and shrink the young generation back to its minimum). Loading the modules
 * grows the young generation to its maximum and fragments the old one; an idle service never
 * collects again, so without this the ~20 MiB stay committed (bench/README.md "Idle memory").
 * `gc()` is taken from a fresh context with `--expose-gc` set only while it is created, so the
 * service's own global scope never gets a `gc`.
 */
export function compactHeap(): HeapCompaction {
  const heapBefore = getHeapStatistics().total_heap_size;
  const cpu = process.cpuUsage();
  setFlagsFromString('--expose-gc');
  let gc: GcFunction;
  try {
    gc = runInNewContext('gc') as GcFunction;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  const used = process.cpuUsage(cpu);
  return {
    heapBefore,
    heapAfter: getHeapStatistics().total_heap_size,
    cpuMs: (used.user + used.system) / 1000,
  };
}

/** Compacts the heap once the service has started (runMain's default), logging the figures at debug. */
export function compactAfterStart(logger: Logger): void {
  const c = compactHeap();
  logger.debug(
    {
      component: 'memory',
      heapBeforeMiB: Math.round(c.heapBefore / 104857.6) / 10,
      heapAfterMiB: Math.round(c.heapAfter / 104857.6) / 10,
      cpuMs: Math.round(c.cpuMs),
    },
    'heap compacted after start',
  );
}
