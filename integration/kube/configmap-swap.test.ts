import assert from 'node:assert/strict';
import { lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, before } from 'mocha';
import { Stack, type ServiceHandle } from '../harness/stack.ts';
import { waitUntil } from '../harness/proc.ts';
import { writeConfigMapDir } from '../harness/configmap-dir.ts';

const rules = (domain: string, perMinute: number): string =>
  [
    `domain: ${domain}`,
    'descriptors:',
    '  - key: generic_key',
    '    value: api',
    '    rate_limit:',
    '      unit: minute',
    `      requests_per_unit: ${perMinute}`,
    '',
  ].join('\n');

describe('kubelet-style ConfigMap volume updates', function () {
  const stack = new Stack('configmap-swap').install();

  it('writeConfigMapDir lays out ..data, a timestamp dir and key symlinks, and swaps atomically', function () {
    const dir = stack.mkdir('layout');
    writeConfigMapDir(dir, { 'a.yaml': 'one', 'b.yaml': 'two' });
    const first = readlinkSync(join(dir, '..data'));
    assert.match(first, /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.[0-9a-f]+$/);
    assert.equal(readlinkSync(join(dir, 'a.yaml')), join('..data', 'a.yaml'));
    assert.equal(readFileSync(join(dir, 'a.yaml'), 'utf8'), 'one');
    const linkIno = lstatSync(join(dir, 'a.yaml')).ino;

    writeConfigMapDir(dir, { 'a.yaml': 'uno', 'c.yaml': 'tres' });
    const second = readlinkSync(join(dir, '..data'));
    assert.notEqual(second, first);
    assert.equal(readFileSync(join(dir, 'a.yaml'), 'utf8'), 'uno');
    assert.equal(readFileSync(join(dir, 'c.yaml'), 'utf8'), 'tres');
    // The key symlink itself is untouched: only ..data moved (why inode watches on files miss updates).
    assert.equal(lstatSync(join(dir, 'a.yaml')).ino, linkIno);
    assert.deepEqual(readdirSync(dir).sort(), ['..data', second, 'a.yaml', 'c.yaml'].sort());
  });

  describe('ratelimit with its config directory mounted from a ConfigMap', function () {
    let rl: ServiceHandle;
    let dir: string;
    const rlconfig = async (): Promise<string> => (await rl.admin('/rlconfig')).body;

    before(async function () {
      this.timeout(60_000);
      dir = stack.mkdir('ratelimit-config');
      writeConfigMapDir(dir, { 'api.yaml': rules('emissary', 7) });
      rl = await stack.service('ratelimit', {
        args: ['--config-dir', dir, '--config-poll-interval', '100ms'],
      });
    });

    it('loads the files behind the symlinks and ignores ..data internals', async function () {
      const text = await rlconfig();
      assert.match(text, /emissary/);
      assert.match(text, /"requests_per_unit":7/);
      assert.doesNotMatch(text, /\.\.data|\.\.\d{4}_/);
    });

    it('reloads when the kubelet swaps ..data to new contents', async function () {
      this.timeout(20_000);
      const before = await rl.metric('ratelimit_service_config_load_total', { result: 'success' });
      writeConfigMapDir(dir, { 'api.yaml': rules('emissary', 3) });
      await waitUntil('new limit visible', async () => /"requests_per_unit":3/.test(await rlconfig()), {
        timeoutMs: 10_000,
      });
      assert.doesNotMatch(await rlconfig(), /"requests_per_unit":7/);
      assert.ok((await rl.metric('ratelimit_service_config_load_total', { result: 'success' })) > before);
    });

    it('a swap to a broken file keeps the last good configuration; a key added later is loaded', async function () {
      this.timeout(20_000);
      const errors = await rl.metric('ratelimit_service_config_load_total', { result: 'error' });
      writeConfigMapDir(dir, { 'api.yaml': 'domain: [unclosed\n' });
      await waitUntil(
        'load error counted',
        async () => (await rl.metric('ratelimit_service_config_load_total', { result: 'error' })) > errors,
        { timeoutMs: 10_000 },
      );
      assert.match(await rlconfig(), /"requests_per_unit":3/);
      assert.equal((await rl.admin('/readyz')).status, 200);

      writeConfigMapDir(dir, { 'api.yaml': rules('emissary', 5), 'other.yaml': rules('other', 11) });
      await waitUntil(
        'both files loaded',
        async () => {
          const t = await rlconfig();
          return /"requests_per_unit":5/.test(t) && /"requests_per_unit":11/.test(t);
        },
        { timeoutMs: 10_000 },
      );
    });
  });
});
