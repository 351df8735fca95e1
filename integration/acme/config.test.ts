import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'mocha';
import { ROOT } from '../harness/stack.ts';

// Bad configuration exits 2 with one line naming the file and the field.
describe('acme: configuration errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'acme-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const run = (args: string[]) =>
    spawnSync(
      process.execPath,
      [join(ROOT, 'services/acme/src/main.ts'), '--admin-port=0', '--challenge-port=0', ...args],
      {
        encoding: 'utf8',
        timeout: 20_000,
      },
    );

  it('a Hosts file with a YAML syntax error exits 2 naming the file and document', () => {
    const hosts = join(dir, 'hosts.yaml');
    writeFileSync(hosts, 'kind: Host\n---\nspec: [unclosed\n');
    const r = run([`--hosts-file=${hosts}`, `--cert-dir=${join(dir, 'certs')}`]);
    assert.equal(r.status, 2);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1);
    assert.match(lines[0] ?? '', new RegExp(`^extsvc-acme: configuration error: ${hosts}: document 1: `));
  });

  it('half an EAB and a bad key mode exit 2 naming both flags', () => {
    const hosts = join(dir, 'ok.yaml');
    writeFileSync(hosts, '');
    const r = run([
      `--hosts-file=${hosts}`,
      `--cert-dir=${join(dir, 'certs')}`,
      '--eab-kid=kid-1',
      '--key-file-mode=999',
    ]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--eab-kid: EAB needs both --eab-kid and --eab-hmac-key/);
    assert.match(r.stderr, /--key-file-mode: must be an octal mode readable by the owner, got '999'/);
  });

  it('a Hosts file without --cert-dir exits 2', () => {
    const hosts = join(dir, 'ok2.yaml');
    writeFileSync(hosts, '');
    const r = run([`--hosts-file=${hosts}`]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--cert-dir: required with --hosts-file/);
  });
});
