import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../harness/stack.ts';

describe('authz configuration errors', () => {
  it('exits 2 with one line naming the policy file and field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'authz-config-'));
    try {
      const file = join(dir, 'policy.yaml');
      writeFileSync(
        file,
        'providers:\n  p: { issuer: x, hmacSecret: { value: tiny-secret } }\nrules: [ { jwt: { providers: [q] } } ]\n',
      );
      const r = spawnSync(
        process.execPath,
        [join(ROOT, 'services/authz/src/main.ts'), '--policy-file', file],
        {
          encoding: 'utf8',
          timeout: 20_000,
          env: { ...process.env, LOG_LEVEL: 'silent' },
        },
      );
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1);
      assert.match(r.stderr, new RegExp(`${file}: providers\\.p\\.hmacSecret: must be at least 32 bytes`));
      assert.match(r.stderr, /rules\[0\]\.jwt\.providers: unknown provider 'q'/);
      assert.doesNotMatch(r.stderr, /tiny-secret/);
      const missing = spawnSync(
        process.execPath,
        [join(ROOT, 'services/authz/src/main.ts'), '--policy-file', join(dir, 'nope.yaml')],
        {
          encoding: 'utf8',
          timeout: 20_000,
        },
      );
      assert.equal(missing.status, 2);
      assert.match(missing.stderr, /--policy-file: cannot read/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
