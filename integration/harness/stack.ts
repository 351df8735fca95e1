import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, type Context } from 'mocha';
import { freePort, ManagedProcess, tcpOpen, waitUntil } from './proc.ts';
import { startEcho } from './echo-server.ts';
import { ENVOY_DEFAULTS, renderEnvoyConfig, type EnvoyVars } from '../../deploy/envoy/render.ts';

/** Repository root. */
export const ROOT = join(import.meta.dirname, '..', '..');

/** The services of the suite and the port flags each one takes. */
export const SERVICE_PORTS = {
  authz: ['grpc', 'http', 'admin'],
  ratelimit: ['grpc', 'http', 'admin'],
  acme: ['challenge', 'admin'],
} as const;

/** A service name. */
export type ServiceName = keyof typeof SERVICE_PORTS;
type PortName = (typeof SERVICE_PORTS)[ServiceName][number];

/** A running service process. */
export interface ServiceHandle {
  readonly name: ServiceName;
  readonly proc: ManagedProcess;
  readonly ports: Readonly<Partial<Record<PortName, number>>>;
  /** GET on the admin port; returns status and body text. */
  admin(path: string): Promise<{ status: number; body: string }>;
  /** The Prometheus exposition text from /metrics. */
  metrics(): Promise<string>;
  /** Sum of a metric's samples whose labels include `labels` (0 when absent). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  stop(): Promise<void>;
  kill(): Promise<void>;
  /** Stops (if running) and starts again with the same ports, args and env. */
  restart(): Promise<void>;
}

/** Options for Stack.service(). */
export interface ServiceOptions {
  readonly args?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** Fixed ports; the others are picked free. */
  readonly ports?: Partial<Record<PortName, number>>;
  /** Admin path polled for readiness (200 expected): '/readyz' (default) or '/healthz'. */
  readonly readyPath?: string;
  readonly readyTimeoutMs?: number;
}

/** A running redis-server. */
export interface RedisHandle {
  readonly port: number;
  readonly url: string;
  readonly proc: () => ManagedProcess;
  /** Runs a redis-cli command against it and returns stdout. */
  cli(...args: string[]): string;
  stop(): Promise<void>;
  restart(): Promise<void>;
}

/** A running Envoy. */
export interface EnvoyHandle {
  readonly proc: ManagedProcess;
  readonly vars: EnvoyVars;
  readonly configPath: string;
  readonly httpPort: number;
  readonly httpsPort: number;
  readonly adminPort: number;
  /** http://127.0.0.1:<httpPort><path> */
  url(path: string): string;
  /** Envoy admin /stats as a map (counters and gauges). */
  stats(): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

/** A running Pebble ACME CA with pebble-challtestsrv as its DNS. */
export interface PebbleHandle {
  readonly directoryUrl: string;
  readonly managementUrl: string;
  readonly port: number;
  /** CA certificate (PEM file) of Pebble's own HTTPS listener: trust it for the directory URL. */
  readonly caCertPath: string;
  readonly caCertPem: string;
  readonly proc: () => ManagedProcess;
  /** Pebble's current issuing root (PEM), from the management interface. */
  roots(): Promise<string>;
  stop(): Promise<void>;
  restart(): Promise<void>;
}

/** Options for Stack.pebble(). */
export interface PebbleOptions {
  /** Port Pebble's VA connects to for HTTP-01 on 127.0.0.1 (usually Envoy's HTTP listener). */
  readonly httpPort: number;
  /** Extra pebble config fields (certificateValidityPeriod, retryAfter...). */
  readonly config?: Record<string, unknown>;
  /** Extra env (PEBBLE_WFE_NONCEREJECT, PEBBLE_AUTHZREUSE...). VA sleeps are off unless set. */
  readonly env?: Record<string, string>;
  /** Pebble binary (default Debian's `pebble` 2.4 on PATH; integration/acme/pebble2 builds v2.10). */
  readonly bin?: string;
}

const PEBBLE_CA_SUBJ = '/CN=extsvc test pebble TLS CA';

/**
 * The integration harness: starts real processes on free loopback ports and always tears them down.
 * Use one Stack per describe block and call install() inside it.
 */
export class Stack {
  readonly name: string;
  readonly #procs: ManagedProcess[] = [];
  readonly #closers: Array<() => Promise<void>> = [];
  readonly #dir: string;
  #stopped = false;

  constructor(name: string) {
    this.name = name;
    this.#dir = mkdtempSync(join(tmpdir(), `extsvc-${name.replace(/[^a-z0-9]+/gi, '-')}-`));
  }

  /** Temporary directory owned by this stack (removed by stop()). */
  get dir(): string {
    return this.#dir;
  }

  /** Creates a subdirectory of the stack's temporary directory. */
  mkdir(name: string): string {
    const d = join(this.#dir, name);
    mkdirSync(d, { recursive: true });
    return d;
  }

  /** Registers mocha hooks: print logs of every process after a failed test, fail when a process died unexpectedly, stop everything after the suite. */
  install(): this {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- mocha hook functions have their own `this`
    const stack = this;
    afterEach(function (this: Context) {
      const dead = stack.unexpectedExits();
      if (this.currentTest?.state === 'failed' || dead.length > 0) stack.printLogs();
      if (dead.length > 0) {
        const detail = dead.map(
          (p) =>
            `${p.unexpectedExit}\n--- last log lines of ${p.name} ---\n${p.logs().split('\n').slice(-40).join('\n')}`,
        );
        throw new Error(`process died during "${this.currentTest?.title}":\n${detail.join('\n')}`);
      }
    });
    after(async function () {
      this.timeout(30_000);
      await stack.stop();
    });
    return this;
  }

  /** Processes that exited without being asked to. */
  unexpectedExits(): ManagedProcess[] {
    return this.#procs.filter((p) => p.unexpectedExit !== undefined);
  }

  /** Writes every process's kept log to stderr. */
  printLogs(): void {
    for (const p of this.#procs) {
      process.stderr.write(
        `\n===== ${this.name}: ${p.name} (${p.exitStatus ? `exited ${JSON.stringify(p.exitStatus)}` : 'running'}) =====\n${p.logs()}\n`,
      );
    }
  }

  /** Starts a process tracked by this stack. */
  spawn(name: string, cmd: string, args: readonly string[], env?: NodeJS.ProcessEnv): ManagedProcess {
    if (this.#stopped) throw new Error(`stack ${this.name} is stopped`);
    const p = new ManagedProcess(name, cmd, args, { env: { ...process.env, ...env }, cwd: ROOT });
    this.#procs.push(p);
    return p;
  }

  /** Stops every process (SIGTERM, then SIGKILL) and removes the temporary directory. Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const close of this.#closers.reverse()) await close().catch(() => undefined);
    await Promise.all(this.#procs.map((p) => p.stop(3000)));
    rmSync(this.#dir, { recursive: true, force: true });
  }

  /** Starts one of the suite's services with `node services/<name>/src/main.ts` and waits until ready. */
  async service(name: ServiceName, opts: ServiceOptions = {}): Promise<ServiceHandle> {
    const ports: Partial<Record<PortName, number>> = {};
    for (const p of SERVICE_PORTS[name]) ports[p] = opts.ports?.[p] ?? (await freePort());
    const args = [
      join(ROOT, 'services', name, 'src', 'main.ts'),
      ...SERVICE_PORTS[name].flatMap((p) => [`--${p}-host=127.0.0.1`, `--${p}-port=${ports[p]}`]),
      ...(opts.args ?? []),
    ];
    const env = { LOG_LEVEL: 'info', DRAIN_MS: '0', ...opts.env };
    let proc = this.spawn(name, process.execPath, args, env);
    const adminUrl = (path: string): string => `http://127.0.0.1:${ports.admin}${path}`;
    const waitReady = async (): Promise<void> => {
      await waitUntil(
        `${name} ${opts.readyPath ?? '/readyz'}`,
        async () => (await fetch(adminUrl(opts.readyPath ?? '/readyz'))).status === 200,
        {
          timeoutMs: opts.readyTimeoutMs ?? 60_000,
          abort: () => (proc.exitStatus ? `exited early:\n${proc.logs()}` : undefined),
        },
      );
    };
    await waitReady();
    const spawnAgain = (): ManagedProcess => this.spawn(name, process.execPath, args, env);
    const handle: ServiceHandle = {
      name,
      get proc() {
        return proc;
      },
      ports,
      admin: async (path) => {
        const res = await fetch(adminUrl(path));
        return { status: res.status, body: await res.text() };
      },
      metrics: async () => (await fetch(adminUrl('/metrics'))).text(),
      metric: async (metricName, labels = {}) => parseMetric(await handle.metrics(), metricName, labels),
      stop: () => proc.stop(),
      kill: () => proc.kill(),
      restart: async () => {
        await proc.stop();
        proc = spawnAgain();
        await waitReady();
      },
    };
    return handle;
  }

  /** Starts redis-server (no persistence) on a free port. */
  async redis(opts: { args?: readonly string[] } = {}): Promise<RedisHandle> {
    const port = await freePort();
    const dir = this.mkdir(`redis-${port}`);
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      ...(opts.args ?? []),
    ];
    let proc: ManagedProcess;
    const start = async (): Promise<void> => {
      proc = this.spawn(`redis-${port}`, 'redis-server', args);
      await waitUntil(`redis on ${port}`, () => tcpOpen(port), {
        abort: () => (proc.exitStatus ? proc.logs() : undefined),
      });
      await waitUntil(`redis PING on ${port}`, () => cli('PING').trim() === 'PONG');
    };
    const cli = (...cmd: string[]): string =>
      execFileSync('redis-cli', ['-p', String(port), ...cmd], { encoding: 'utf8', timeout: 5000 });
    await start();
    return {
      port,
      url: `redis://127.0.0.1:${port}`,
      proc: () => proc,
      cli,
      stop: () => proc.stop(),
      restart: async () => {
        await proc.stop();
        await start();
      },
    };
  }

  /** Starts the upstream echo app in this process (answers 200 with the request as JSON). */
  async echo(): Promise<{ port: number; readonly requests: number }> {
    const echo = await startEcho(0);
    this.#closers.push(() => echo.close());
    return echo;
  }

  /** Renders deploy/envoy/envoy.template.yaml with `vars` (ports default to free ones) and starts Envoy. */
  async envoy(vars: Partial<EnvoyVars> = {}, opts: { logLevel?: string } = {}): Promise<EnvoyHandle> {
    const full: EnvoyVars = {
      ...ENVOY_DEFAULTS,
      ADMIN_PORT: await freePort(),
      HTTP_PORT: await freePort(),
      HTTPS_PORT: await freePort(),
      LISTEN_ADDRESS: '127.0.0.1',
      // Functional tests, not timing tests: on a loaded CI machine a first Check (a JWKS fetch, a new
      // Redis connection) can take longer than the shipped 0.5 s / 0.1 s, and Envoy would then answer
      // 503 (authz) or let the request through (ratelimit fails open). 5 s is Emissary's AuthService
      // default; a test about deadlines sets its own.
      AUTHZ_TIMEOUT: '5s',
      RATELIMIT_TIMEOUT: '2s',
      ...vars,
    };
    const configPath = join(this.mkdir(`envoy-${full.HTTP_PORT}`), 'envoy.yaml');
    writeFileSync(configPath, renderEnvoyConfig(full));
    const proc = this.spawn(`envoy-${full.HTTP_PORT}`, envoyBin(), [
      '-c',
      configPath,
      '--use-dynamic-base-id',
      '--log-level',
      opts.logLevel ?? 'warn',
      '--component-log-level',
      'upstream:warn',
      '--concurrency',
      '1',
    ]);
    await waitUntil(
      'envoy /ready',
      async () => (await fetch(`http://127.0.0.1:${full.ADMIN_PORT}/ready`)).status === 200,
      { timeoutMs: 30_000, abort: () => (proc.exitStatus ? `exited early:\n${proc.logs()}` : undefined) },
    );
    return {
      proc,
      vars: full,
      configPath,
      httpPort: full.HTTP_PORT,
      httpsPort: full.HTTPS_PORT,
      adminPort: full.ADMIN_PORT,
      url: (path) => `http://127.0.0.1:${full.HTTP_PORT}${path}`,
      stats: async () => {
        const text = await (await fetch(`http://127.0.0.1:${full.ADMIN_PORT}/stats`)).text();
        const m = new Map<string, number>();
        for (const line of text.split('\n')) {
          const i = line.lastIndexOf(': ');
          if (i > 0) {
            const v = Number(line.slice(i + 2));
            if (Number.isFinite(v)) m.set(line.slice(0, i), v);
          }
        }
        return m;
      },
      stop: () => proc.stop(),
    };
  }

  /** Starts pebble-challtestsrv (DNS: every name is 127.0.0.1) and Pebble with a generated TLS certificate. */
  async pebble(opts: PebbleOptions): Promise<PebbleHandle> {
    const dir = this.mkdir(`pebble-${await freePort()}`);
    const caKey = join(dir, 'ca.key');
    const caCert = join(dir, 'ca.pem');
    const key = join(dir, 'key.pem');
    const csr = join(dir, 'cert.csr');
    const cert = join(dir, 'cert.pem');
    const ext = join(dir, 'ext.cnf');
    const ossl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'pipe' });
    ossl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      caKey,
      '-out',
      caCert,
      '-days',
      '2',
      '-subj',
      PEBBLE_CA_SUBJ,
    );
    ossl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      csr,
      '-subj',
      '/CN=localhost',
    );
    writeFileSync(
      ext,
      'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n',
    );
    ossl(
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      caCert,
      '-CAkey',
      caKey,
      '-CAcreateserial',
      '-out',
      cert,
      '-days',
      '2',
      '-extfile',
      ext,
    );
    const dnsPort = await freePort();
    const challMgmt = await freePort();
    const port = await freePort();
    const mgmt = await freePort();
    const configPath = join(dir, 'pebble.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        pebble: {
          listenAddress: `127.0.0.1:${port}`,
          managementListenAddress: `127.0.0.1:${mgmt}`,
          certificate: cert,
          privateKey: key,
          httpPort: opts.httpPort,
          tlsPort: await freePort(),
          ocspResponderURL: '',
          externalAccountBindingRequired: false,
          ...opts.config,
        },
      }),
    );
    const chall = this.spawn(`challtestsrv-${dnsPort}`, 'pebble-challtestsrv', [
      '-dns01',
      `127.0.0.1:${dnsPort}`,
      '-http01',
      '',
      '-https01',
      '',
      '-tlsalpn01',
      '',
      '-management',
      `127.0.0.1:${challMgmt}`,
      '-defaultIPv4',
      '127.0.0.1',
      '-defaultIPv6',
      '',
    ]);
    await waitUntil('pebble-challtestsrv', () => tcpOpen(challMgmt), {
      abort: () => (chall.exitStatus ? chall.logs() : undefined),
    });
    const caCertPem = execFileSync('cat', [caCert], { encoding: 'utf8' });
    const env = { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', ...opts.env };
    let proc: ManagedProcess;
    const start = async (): Promise<void> => {
      proc = this.spawn(
        `pebble-${port}`,
        opts.bin ?? 'pebble',
        ['-config', configPath, '-dnsserver', `127.0.0.1:${dnsPort}`],
        env,
      );
      await waitUntil('pebble listening', () => tcpOpen(port), {
        abort: () => (proc.exitStatus ? proc.logs() : undefined),
      });
      await waitUntil('pebble management', () => tcpOpen(mgmt), {
        abort: () => (proc.exitStatus ? proc.logs() : undefined),
      });
    };
    await start();
    return {
      directoryUrl: `https://127.0.0.1:${port}/dir`,
      managementUrl: `https://127.0.0.1:${mgmt}`,
      port,
      caCertPath: caCert,
      caCertPem,
      proc: () => proc,
      roots: () => httpsGet(`https://127.0.0.1:${mgmt}/roots/0`, caCertPem),
      stop: () => proc.stop(),
      restart: async () => {
        await proc.stop();
        await start();
      },
    };
  }
}

/** The Envoy binary: ENVOY_BIN, else `envoy` on PATH (scripts/env.sh puts the project's on PATH). */
export function envoyBin(): string {
  return process.env['ENVOY_BIN'] ?? 'envoy';
}

/** GET over HTTPS trusting `caPem`; returns the body. */
export async function httpsGet(url: string, caPem: string): Promise<string> {
  const https = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca: caPem }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        res.statusCode === 200
          ? resolve(Buffer.concat(chunks).toString('utf8'))
          : reject(new Error(`GET ${url}: ${res.statusCode}`)),
      );
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${url}: timeout`)));
  });
}

/** Sums the samples of `name` whose labels include every pair of `labels` in Prometheus text. */
export function parseMetric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const pair of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      found[pair[1] as string] = pair[2] as string;
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) sum += Number(m[4]);
  }
  return sum;
}
