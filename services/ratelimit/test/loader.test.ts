import { describe, it, beforeEach, afterEach } from 'mocha';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@extsvc/common/logger';
import { readRulesFiles, rulesSource, RulesHolder, type LoadOutcome } from '../src/loader.ts';

const logger = createLogger({ service: 'test', level: 'silent' });
const good = (domain: string, rpu = 1): string =>
  `domain: ${domain}\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: ${rpu}}\n`;

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('ratelimit/loader', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'rl-loader-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('reads RUNTIME_ROOT/SUBDIRECTORY/APPDIRECTORY with runtime-key names, skipping dotfiles and ..data', () => {
    const dir = join(root, 'ratelimit', 'config');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    mkdirSync(join(dir, '..2026_01_01'), { recursive: true });
    writeFileSync(join(dir, 'b.yaml'), good('b'));
    writeFileSync(join(dir, 'sub', 'c.yaml'), good('c'));
    writeFileSync(join(dir, '.hidden.yaml'), good('hidden'));
    writeFileSync(join(dir, '..2026_01_01', 'a.yaml'), good('a'));
    symlinkSync('..2026_01_01', join(dir, '..data'));
    symlinkSync('..data/a.yaml', join(dir, 'a.yaml'));
    const opts = {
      configDir: undefined,
      runtimeRoot: root,
      runtimeSubdirectory: 'ratelimit',
      runtimeAppdirectory: 'config',
      runtimeIgnoredotfiles: true,
      mergeDomainConfig: false,
    };
    const src = rulesSource(opts);
    assert.deepEqual(
      readRulesFiles(src).map((f) => f.name),
      ['config.a.yaml', 'config.b.yaml', 'config.sub.c.yaml'],
    );
    // RUNTIME_WATCH_ROOT=false: the reference names files relative to the app directory
    assert.deepEqual(
      readRulesFiles(rulesSource({ ...opts, runtimeWatchRoot: false })).map((f) => f.name),
      ['a.yaml', 'b.yaml', 'sub.c.yaml'],
    );
  });

  it('keeps the last good configuration on a bad reload and reloads on change', async () => {
    writeFileSync(join(root, 'a.yaml'), good('a'));
    const outcomes: LoadOutcome[] = [];
    const holder = new RulesHolder(
      { dir: root, namePrefix: '', ignoreDotfiles: true, mergeDomains: false },
      { logger, onOutcome: (o) => outcomes.push(o) },
    );
    assert.equal(holder.reload().kind, 'loaded');
    holder.watch(25);
    try {
      writeFileSync(join(root, 'bad.yaml'), 'domain: a\n');
      await until(() => outcomes.length === 2);
      assert.deepEqual(outcomes[1], {
        kind: 'error',
        message: "bad.yaml: duplicate domain 'a' in config file",
      });
      assert.ok(holder.rules?.domains.has('a'));
      assert.equal(holder.lastError, "bad.yaml: duplicate domain 'a' in config file");
      rmSync(join(root, 'bad.yaml'));
      writeFileSync(join(root, 'b.yaml'), good('b'));
      await until(() => holder.rules?.domains.has('b') === true);
      assert.equal(holder.lastError, undefined);
    } finally {
      await holder.close();
    }
  });

  it('sees a kubelet-style symlink swap of the config directory', async () => {
    const v1 = join(root, '..v1');
    const v2 = join(root, '..v2');
    mkdirSync(v1);
    mkdirSync(v2);
    writeFileSync(join(v1, 'r.yaml'), good('one'));
    writeFileSync(join(v2, 'r.yaml'), good('two'));
    symlinkSync('..v1', join(root, '..data'));
    symlinkSync('..data/r.yaml', join(root, 'r.yaml'));
    const holder = new RulesHolder(
      { dir: root, namePrefix: '', ignoreDotfiles: true, mergeDomains: false },
      { logger, onOutcome: () => undefined },
    );
    holder.reload();
    assert.ok(holder.rules?.domains.has('one'));
    holder.watch(25);
    try {
      symlinkSync('..v2', join(root, '..data_tmp'));
      renameSync(join(root, '..data_tmp'), join(root, '..data'));
      await until(() => holder.rules?.domains.has('two') === true);
      assert.equal(holder.rules?.domains.has('one'), false);
    } finally {
      await holder.close();
    }
  });
});
