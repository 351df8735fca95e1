import assert from 'node:assert/strict';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'mocha';
import { createSelfSigned, keyMatchesChain } from '../src/certs.ts';
import { DirectoryCertificateStore, FileAccountStore, writeFileAtomic } from '../src/file-store.ts';

const root = mkdtempSync(join(tmpdir(), 'acme-store-'));
after(() => rmSync(root, { recursive: true, force: true }));
const secret = { namespace: 'web', name: 'a-tls' };
const meta = { temporary: false, names: ['a.example.com'], issuedAt: '2026-01-01T00:00:00.000Z' };

describe('acme file store', () => {
  it('replaces pre-existing tls.crt/tls.key links that point outside its own ..data; the outside files stay untouched', async () => {
    const store = new DirectoryCertificateStore(join(root, 'planted'));
    const dir = store.dir(secret);
    mkdirSync(dir, { recursive: true });
    const outside = join(root, 'outside');
    mkdirSync(outside, { recursive: true });
    const foreign = createSelfSigned(['victim.example.com'], Date.now(), 3_600_000);
    writeFileSync(join(outside, 'tls.crt'), foreign.chainPem);
    writeFileSync(join(outside, 'tls.key'), foreign.keyPem);
    symlinkSync(join(outside, 'tls.crt'), join(dir, 'tls.crt'));
    symlinkSync(join(outside, 'tls.key'), join(dir, 'tls.key'));
    symlinkSync('../../../outside', join(dir, '..data'));
    // A ..data the store did not make is no certificate of ours.
    assert.equal(await store.read(secret), undefined);
    const pair = createSelfSigned(['a.example.com'], Date.now(), 3_600_000);
    await store.write(secret, { ...pair, meta });
    assert.equal(readlinkSync(join(dir, 'tls.crt')), '..data/tls.crt');
    assert.equal(readlinkSync(join(dir, 'tls.key')), '..data/tls.key');
    assert.match(readlinkSync(join(dir, '..data')), /^\.\.[0-9TZ]+-[0-9a-f]{8}$/);
    // Through the top-level names, as Envoy reads them: our pair, not the planted one.
    assert.equal(readFileSync(join(dir, 'tls.crt'), 'utf8'), pair.chainPem);
    assert.equal(readFileSync(join(dir, 'tls.key'), 'utf8'), pair.keyPem);
    assert.equal(readFileSync(join(outside, 'tls.crt'), 'utf8'), foreign.chainPem);
    assert.equal(readFileSync(join(outside, 'tls.key'), 'utf8'), foreign.keyPem);
    assert.equal((await store.read(secret))?.chainPem, pair.chainPem);
  });

  it('round-trips a pair with the Kubernetes-style ..data layout and an SDS file', async () => {
    const store = new DirectoryCertificateStore(join(root, 'certs'), '/etc/envoy/certs');
    assert.equal(await store.read(secret), undefined);
    const pair = createSelfSigned(['a.example.com'], Date.now(), 3_600_000);
    await store.write(secret, { ...pair, meta });
    const back = await store.read(secret);
    assert.equal(back?.chainPem, pair.chainPem);
    assert.equal(back?.keyPem, pair.keyPem);
    assert.deepEqual(back?.meta, meta);
    const dir = store.dir(secret);
    assert.equal(readlinkSync(join(dir, 'tls.crt')), '..data/tls.crt');
    assert.equal(statSync(join(dir, 'tls.key')).mode & 0o777, 0o600);
    const sds = readFileSync(store.sdsPath(secret), 'utf8');
    assert.match(sds, /name: "web\/a-tls"/);
    assert.match(sds, /filename: "\/etc\/envoy\/certs\/web\/a-tls\/tls.crt"/);
    assert.match(sds, /watched_directory: \{ path: "\/etc\/envoy\/certs\/web\/a-tls" \}/);
  });

  it('replaces the pair atomically: concurrent readers always see a matching cert and key', async () => {
    const store = new DirectoryCertificateStore(join(root, 'atomic'));
    const pairs = Array.from({ length: 8 }, (_, i) =>
      createSelfSigned([`n${i}.example.com`], Date.now(), 3_600_000),
    );
    await store.write(secret, { ...(pairs[0] as (typeof pairs)[0]), meta });
    let writing = true;
    const writer = (async () => {
      for (let round = 0; round < 5; round++)
        for (const p of pairs) await store.write(secret, { ...p, meta });
      writing = false;
    })();
    let reads = 0;
    while (writing) {
      // Through the top-level symlinks, as Envoy reads them.
      const dir = store.dir(secret);
      const version = readlinkSync(join(dir, '..data'));
      try {
        const crt = readFileSync(join(dir, version, 'tls.crt'), 'utf8');
        const key = readFileSync(join(dir, version, 'tls.key'), 'utf8');
        assert.ok(keyMatchesChain(crt, key), 'cert and key of one version match');
        reads += 1;
      } catch (err) {
        // A version removed between readlink and read is fine (Envoy retries on the next move).
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      const back = await store.read(secret);
      assert.ok(back && keyMatchesChain(back.chainPem, back.keyPem));
      await new Promise((r) => setImmediate(r));
    }
    await writer;
    assert.ok(reads > 0);
    const left = readdirSync(store.dir(secret)).filter((e) => e.startsWith('..'));
    assert.equal(left.length, 2, `only ..data and one version remain: ${left.join(',')}`);
  });

  it('persists and clears the failure record beside the certificate', async () => {
    const store = new DirectoryCertificateStore(join(root, 'failures'));
    assert.equal(await store.readFailure(secret), undefined);
    const f = {
      names: ['a.example.com'],
      failures: 2,
      at: 1000,
      backoffMs: 600_000,
      reason: 'down',
      code: 'ERR_ACME_UNREACHABLE',
    };
    await store.writeFailure(secret, f);
    assert.deepEqual(await store.readFailure(secret), f);
    await store.writeFailure(secret, undefined);
    assert.equal(await store.readFailure(secret), undefined);
  });

  it('stores the account key and URL with mode 0600 in a 0700 directory', async () => {
    const accounts = new FileAccountStore(join(root, 'accounts'));
    assert.equal(await accounts.load('x'), undefined);
    await accounts.save('x', {
      keyPem: 'KEY',
      accountUrl: 'https://ca/acct/1',
      directoryUrl: 'https://ca/dir',
    });
    assert.deepEqual(await accounts.load('x'), {
      keyPem: 'KEY',
      accountUrl: 'https://ca/acct/1',
      directoryUrl: 'https://ca/dir',
    });
    assert.equal(statSync(join(root, 'accounts', 'x', 'user.key')).mode & 0o777, 0o600);
    assert.equal(statSync(join(root, 'accounts', 'x', 'account.json')).mode & 0o777, 0o600);
    assert.equal(statSync(join(root, 'accounts', 'x')).mode & 0o777, 0o700);
  });

  it('writes files atomically without leaving temporary files', async () => {
    const p = join(root, 'atomic.txt');
    await writeFileAtomic(p, 'one', 0o644);
    await writeFileAtomic(p, 'two', 0o600);
    assert.equal(readFileSync(p, 'utf8'), 'two');
    assert.equal(statSync(p).mode & 0o777, 0o600);
    assert.deepEqual(
      readdirSync(root).filter((e) => e.includes('.tmp-')),
      [],
    );
  });
});
