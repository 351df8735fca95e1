import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest, createServer, type Server } from 'node:https';
import { connect } from 'node:tls';
import { dirname, join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { ServiceHandle } from '../harness/stack.ts';

/** One Host document for the Hosts file. */
export interface HostSpec {
  readonly name: string;
  readonly hostname: string;
  readonly secret?: string;
  readonly authority: string;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** Writes a multi-document Hosts file. */
export function writeHosts(path: string, hosts: readonly HostSpec[]): void {
  const docs = hosts.map((h) =>
    [
      'apiVersion: getambassador.io/v3alpha1',
      'kind: Host',
      h.annotations
        ? `metadata: { name: ${h.name}, annotations: ${JSON.stringify(h.annotations)} }`
        : `metadata: { name: ${h.name} }`,
      'spec:',
      `  hostname: "${h.hostname}"`,
      `  acmeProvider: { authority: "${h.authority}", email: ops@example.com }`,
      ...(h.secret ? [`  tlsSecret: { name: ${h.secret} }`] : []),
    ].join('\n'),
  );
  writeFileSync(path, `${docs.join('\n---\n')}\n`);
}

/** The admin /hosts view of acme. */
export interface HostStatusView {
  key: string;
  state: string;
  tlsSecret?: string;
  phasePending: string;
  errorReason?: string;
  errorCode?: string;
  errorTimestamp?: string;
  errorBackoff?: string;
  notAfter?: string;
  nextRenewal?: string;
  /** The CA's ARI suggested window (ISO 8601). */
  renewalWindow?: { start: string; end: string };
  nextRenewalInfoCheck?: string;
  profile?: string;
  temporaryCertificate?: boolean;
  names?: string[];
}

/** Reads acme's /hosts. */
export async function hostStatuses(acme: ServiceHandle): Promise<Map<string, HostStatusView>> {
  const r = await acme.admin('/hosts');
  const body = JSON.parse(r.body) as { hosts: HostStatusView[] };
  return new Map(body.hosts.map((h) => [h.key, h]));
}

/** TLS handshake with SNI `servername`, verifying against `caPem`; returns the peer leaf serial. */
export function tlsServe(
  port: number,
  servername: string,
  caPem: string,
): Promise<{ serial: string; names: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host: '127.0.0.1', port, servername, ca: caPem, rejectUnauthorized: true },
      () => {
        const cert = socket.getPeerX509Certificate();
        socket.end();
        if (!cert) reject(new Error('no peer certificate'));
        else resolve({ serial: cert.serialNumber.toUpperCase(), names: cert.subjectAltName ?? '' });
      },
    );
    socket.setTimeout(5000, () => socket.destroy(new Error('TLS handshake timeout')));
    socket.on('error', reject);
  });
}

/** What the fault proxy does with one request; undefined = forward to Pebble. */
export type Fault =
  | { status: number; headers?: Record<string, string>; body?: string }
  | { delayMs: number }
  /** Holds the request until `until` resolves, then forwards it (a positive signal, not a timer). */
  | { until: Promise<void> };

/**
 * An HTTPS proxy in front of Pebble (with Pebble's own TLS certificate, so the same CA trusts it)
 * that injects faults chosen per request; Pebble's URLs point at the proxy (Host header kept).
 */
export class FaultProxy {
  readonly #server: Server;
  readonly #target: URL;
  readonly #caPem: string;
  /** Decides a fault for a request (method, path); undefined forwards it. */
  decide: (method: string, path: string) => Fault | undefined = () => undefined;
  /** Requests seen: method, path, time. */
  readonly seen: { method: string; path: string; at: number }[] = [];
  port = 0;

  constructor(pebbleDirectoryUrl: string, pebbleCaCertPath: string) {
    this.#target = new URL(pebbleDirectoryUrl);
    this.#caPem = readFileSync(pebbleCaCertPath, 'utf8');
    const dir = dirname(pebbleCaCertPath);
    this.#server = createServer(
      { cert: readFileSync(join(dir, 'cert.pem')), key: readFileSync(join(dir, 'key.pem')) },
      (req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const path = req.url ?? '/';
          const method = req.method ?? 'GET';
          this.seen.push({ method, path, at: Date.now() });
          const fault = this.decide(method, path);
          const forward = (): void => {
            const out = httpsRequest(
              {
                host: this.#target.hostname,
                port: this.#target.port,
                path,
                method,
                // Pebble builds its URLs (and checks the JWS url) from the Host header: keep the proxy's.
                headers: req.headers,
                ca: this.#caPem,
                agent: false,
              },
              (up) => {
                const body: Buffer[] = [];
                up.on('data', (c: Buffer) => body.push(c));
                up.on('end', () => {
                  const headers: Record<string, string | string[]> = {};
                  for (const [k, v] of Object.entries(up.headers)) {
                    if (v === undefined || k === 'connection' || k === 'transfer-encoding') continue;
                    headers[k] = v;
                  }
                  res.writeHead(up.statusCode ?? 502, headers);
                  res.end(Buffer.concat(body));
                });
              },
            );
            out.on('error', () => {
              res.writeHead(502);
              res.end();
            });
            out.end(Buffer.concat(chunks));
          };
          if (!fault) return forward();
          if ('until' in fault) {
            void fault.until.then(forward);
            return;
          }
          if ('delayMs' in fault) {
            setTimeout(forward, fault.delayMs).unref();
            return;
          }
          res.writeHead(fault.status, fault.headers ?? {});
          res.end(fault.body ?? '');
        });
      },
    );
  }

  /** Listens on a free loopback port. */
  async start(): Promise<string> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    this.port = (this.#server.address() as AddressInfo).port;
    return `https://127.0.0.1:${this.port}${this.#target.pathname}`;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}
