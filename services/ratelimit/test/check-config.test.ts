import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkConfigDir, parseCheckArgs } from '../src/check-config.ts';
import { FIXTURES } from './helpers.ts';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'check-config.ts');

describe('ratelimit/check-config', () => {
  it('accepts the reference flags and ours', () => {
    assert.deepEqual(parseCheckArgs(['-config_dir', '/x', '-merge_domain_configs'], {}), {
      dir: '/x',
      merge: true,
    });
    assert.deepEqual(parseCheckArgs(['--config-dir=/y'], {}), { dir: '/y', merge: false });
  });

  it('prints what the reference prints on success', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rl-check-'));
    try {
      copyFileSync(join(FIXTURES, 'good', 'basic_config.yaml'), join(dir, 'basic_config.yaml'));
      const out = execFileSync(process.execPath, [CLI, '-config_dir', dir], { encoding: 'utf8' });
      assert.equal(
        out,
        `checking rate limit configs...\nloading config directory: ${dir}\nopening config file: ${join(dir, 'basic_config.yaml')}\nall rate limit configs ok\n`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('accepts the shipped example', () => {
    assert.equal(
      checkConfigDir(join(dirname(fileURLToPath(import.meta.url)), '..', 'examples', 'config'), false)
        .exitCode,
      0,
    );
  });

  it('exits 1 with the message on a bad file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rl-check-'));
    try {
      writeFileSync(
        join(dir, 'a.yaml'),
        'domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight}\n',
      );
      const r = spawnSync(process.execPath, [CLI, '--config-dir', dir], { encoding: 'utf8' });
      assert.equal(r.status, 1);
      assert.match(
        r.stdout,
        new RegExp(
          `error loading rate limit configs: ${join(dir, 'a.yaml')}: invalid rate limit unit 'fortnight'\n$`,
        ),
      );
      const merged = checkConfigDir(join(FIXTURES, 'good'), false);
      assert.equal(merged.exitCode, 1);
      assert.match(merged.lines.at(-1) ?? '', /duplicate domain 'merged' in config file/);
      assert.equal(checkConfigDir(join(FIXTURES, 'good'), true).exitCode, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
