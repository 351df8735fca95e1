import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'mocha';
import { FileHostSource } from '../src/host-source.ts';
import type { ParsedHost } from '../src/host.ts';

const dir = mkdtempSync(join(tmpdir(), 'acme-hosts-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const defaults = {
  namespace: 'default',
  authority: 'https://ca.example/dir',
  ambassadorIds: ['default'],
  allowedAuthorities: ['https://ca.example/dir'],
};
const host = (name: string): string =>
  `apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: ${name}}\nspec: {hostname: ${name}.example.com, tlsSecret: {name: ${name}}}\n`;

describe('acme file Host source', () => {
  it('loads, reports an unreadable file, and has no Hosts without a file', () => {
    const file = join(dir, 'a.yaml');
    writeFileSync(file, host('a'));
    const ok = new FileHostSource(file, defaults, 50).load();
    assert.equal(ok.kind === 'ok' && ok.hosts[0]?.key, 'default/a');
    const missing = new FileHostSource(join(dir, 'nope.yaml'), defaults, 50).load();
    assert.equal(missing.kind === 'error' && missing.problems[0]?.field, join(dir, 'nope.yaml'));
    const none = new FileHostSource(undefined, defaults, 50).load();
    assert.deepEqual(none, { kind: 'ok', hosts: [], ignored: 0 });
  });

  it('delivers changes and reports a broken update without delivering it', async () => {
    const file = join(dir, 'w.yaml');
    writeFileSync(file, host('a'));
    const source = new FileHostSource(file, defaults, 20);
    const seen: (readonly ParsedHost[])[] = [];
    const errors: string[] = [];
    const w = source.watch(
      async (hosts) => void seen.push(hosts),
      (problems) => void errors.push(problems[0]?.field ?? ''),
    );
    try {
      const wait = async (cond: () => boolean): Promise<void> => {
        for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
        assert.ok(cond());
      };
      writeFileSync(file, `${host('a')}---\n${host('bb')}`);
      await wait(() => seen.length === 1);
      assert.deepEqual(
        seen[0]?.map((h) => h.key),
        ['default/a', 'default/bb'],
      );
      writeFileSync(file, 'spec: [broken\n');
      await wait(() => errors.length === 1);
      assert.equal(errors[0], `${file}: document 0`);
      assert.equal(seen.length, 1);
    } finally {
      await w.close();
    }
  });
});
