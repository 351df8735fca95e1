import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { leftovers } from '../../scripts/leftovers.ts';
import { waitUntil } from '../harness/proc.ts';

// scripts/test.sh ends with this check: it must see what THIS run left behind, and nothing else
// (issue 12: the old pgrep pattern matched any extsvc-*envoy.yaml on the machine).
describe('leftover-process check: only processes of this run', function () {
  this.timeout(30_000);
  const runId = `probe-${process.pid}-${Date.now()}`;

  it('finds an orphan carrying the run id, ignores other runs and live descendants of the run shell', async () => {
    // An orphan of this run: started through a shell that exits at once, so it is re-parented away from us.
    const r = spawnSync('sh', ['-c', 'setsid sleep 60 >/dev/null 2>&1 & echo $!'], {
      env: { ...process.env, EXTSVC_RUN_ID: runId },
      encoding: 'utf8',
    });
    const orphan = Number(r.stdout.trim());
    // A still-running child of "the run shell" (this process) and a process of another run.
    const child = spawn('sleep', ['60'], { env: { ...process.env, EXTSVC_RUN_ID: runId } });
    const other = spawn('sleep', ['60'], { env: { ...process.env, EXTSVC_RUN_ID: `${runId}-other` } });
    try {
      const found = await waitUntil('orphan visible', () => {
        const l = leftovers(runId, process.pid);
        return l.some((p) => p.pid === orphan) ? l : undefined;
      });
      assert.deepEqual(
        found.map((p) => p.pid),
        [orphan],
      );
      assert.match(found[0]?.cmdline ?? '', /sleep 60/);
      assert.ok(!leftovers(runId, process.pid).some((p) => p.pid === other.pid));
    } finally {
      for (const pid of [orphan, child.pid, other.pid]) {
        try {
          if (pid) process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  });
});
