import { request } from 'node:http';
import { connect } from 'node:net';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'mocha';
import { createRuntime } from '@extsvc/common/runtime';
import { loadConfig } from '../src/config.ts';
import { type AcmeService, start } from '../src/server.ts';
import { FakeCa, FakeClock } from './fakes.ts';

describe('acme server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'acme-server-'));
  const clock = new FakeClock(Date.now());
  const ca = new FakeCa(clock);
  let release!: () => void;
  let svc: AcmeService;
  // node:http, not fetch: fetch does not let a caller set the Host header.
  const get = (port: number, path: string, host: string) =>
    new Promise<{
      status: number;
      text: () => Promise<string>;
      headers: { get: (n: string) => string | undefined };
    }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            text: async () => body,
            headers: { get: (n) => res.headers[n] as string | undefined },
          }),
        );
      });
      req.on('error', reject);
      req.end();
    });

  before(async () => {
    const hosts = join(dir, 'hosts.yaml');
    writeFileSync(
      hosts,
      'apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: a}\nspec: {hostname: a.example.com, acmeProvider: {authority: "https://ca.example/dir"}, tlsSecret: {name: a-tls}}\n',
    );
    const parsed = loadConfig(
      [
        `--hosts-file=${hosts}`,
        `--cert-dir=${join(dir, 'certs')}`,
        '--challenge-host=127.0.0.1',
        '--challenge-port=0',
        '--admin-host=127.0.0.1',
        '--admin-port=0',
        '--drain-ms=0',
        '--allowed-authorities=https://ca.example/dir',
      ],
      {},
    );
    assert.equal(parsed.kind, 'options');
    if (parsed.kind !== 'options') return;
    const rt = createRuntime({
      service: 'acme',
      version: 'test',
      logLevel: 'silent',
      destination: new Writable({ write: (_c, _e, cb) => cb() }),
    });
    ca.gate = new Promise((r) => (release = r));
    svc = await start(parsed.options, rt, { clock, ca, random: () => 0 });
    // Account files are real I/O: wait until the fake CA holds the order at its gate.
    for (let i = 0; i < 500 && ca.presented.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  });
  after(async () => {
    release();
    await svc.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers the pending token for its name only, and 404 for anything else', async () => {
    const token = ca.presented[0] as string;
    assert.ok(token, 'an order is pending');
    const ok = await get(svc.challengePort, `/.well-known/acme-challenge/${token}`, 'a.example.com:80');
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), `${token}.thumb`);
    assert.equal(ok.headers.get('cache-control'), 'no-cache, no-store, must-revalidate');
    assert.equal(
      (await get(svc.challengePort, `/.well-known/acme-challenge/${token}`, 'other.example.com')).status,
      404,
    );
    assert.equal(
      (await get(svc.challengePort, '/.well-known/acme-challenge/unknown', 'a.example.com')).status,
      404,
    );
  });

  it('never answers a token to a request without a Host or with an empty one (400)', async () => {
    const token = ca.presented[0] as string;
    assert.ok(token, 'an order is pending');
    // Raw bytes: HTTP clients always send a Host. HTTP/1.0 may omit it; HTTP/1.1 may send it empty.
    const raw = (head: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const s = connect(svc.challengePort, '127.0.0.1', () => s.end(head));
        let out = '';
        s.on('data', (c: Buffer) => (out += c.toString()));
        s.on('end', () => resolve(out));
        s.on('error', reject);
      });
    const path = `/.well-known/acme-challenge/${token}`;
    for (const head of [
      `GET ${path} HTTP/1.0\r\n\r\n`,
      `GET ${path} HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n`,
      `GET ${path} HTTP/1.1\r\nHost: :80\r\nConnection: close\r\n\r\n`,
    ]) {
      const res = await raw(head);
      assert.match(res, /^HTTP\/1\.[01] 400 /, JSON.stringify(head));
      assert.ok(!res.includes(`${token}.thumb`), 'no key authorization');
    }
    // The pending token is still served to its own name.
    assert.equal((await get(svc.challengePort, path, 'a.example.com')).status, 200);
  });

  it('shows Pending on /hosts while ordering, then Ready; the token is gone afterwards', async () => {
    const pending = (await (await fetch(`http://127.0.0.1:${svc.adminPort}/hosts`)).json()) as {
      hosts: { state: string; phasePending: string }[];
    };
    assert.equal(pending.hosts[0]?.state, 'Pending');
    assert.equal(pending.hosts[0]?.phasePending, 'ACMECertificateChallenge');
    release();
    await svc.issuer?.idle();
    const ready = (await (await fetch(`http://127.0.0.1:${svc.adminPort}/hosts`)).json()) as {
      hosts: { state: string }[];
    };
    assert.equal(ready.hosts[0]?.state, 'Ready');
    const token = ca.presented[0] as string;
    assert.equal(
      (await get(svc.challengePort, `/.well-known/acme-challenge/${token}`, 'a.example.com')).status,
      404,
    );
    const metrics = await (await fetch(`http://127.0.0.1:${svc.adminPort}/metrics`)).text();
    assert.match(metrics, /acme_challenge_requests_total\{[^}]*result="served"[^}]*\} 2/);
    assert.match(metrics, /acme_orders_total\{[^}]*result="issued"[^}]*\} 1/);
  });
});
