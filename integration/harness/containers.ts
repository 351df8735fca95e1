// The container backend of the harness: a Docker engine (found, never started here: scripts/test.sh starts a
// private one), the images (deploy/images/build.sh), the compose CLI (deploy/images/compose.sh) and
// testcontainers settings. Suites that opt in call requireEngine() in `before` and are skipped, with one
// line saying why, when no engine answers.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context } from 'mocha';
import {
  GenericContainer,
  PullPolicy,
  Wait,
  type StartedNetwork,
  type StartedTestContainer,
} from 'testcontainers';

/** Repository root. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CACHE = process.env['EXTSVC_CACHE'] ?? join(homedir(), '.cache', 'extsvc');
/** The socket of the private engine that scripts/test.sh starts (deploy/images/engine.sh). */
const PRIVATE_SOCKET = join(process.env['EXTSVC_DOCKER_RUN'] ?? '/run/extsvc-docker', 'docker.sock');

/** A command failed: its arguments and the end of its output. */
export class CommandError extends Error {
  readonly code = 'COMMAND_FAILED';
  readonly command: string;
  readonly output: string;
  constructor(command: string, output: string) {
    super(`${command} failed:\n${output.slice(-4000)}`);
    this.name = 'CommandError';
    this.command = command;
    this.output = output;
  }
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', timeout: 5000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

let engine: Promise<{ host: string } | { none: string }> | undefined;

/**
 * The Docker engine the container suites use: DOCKER_HOST (unix sockets only), else the default socket,
 * else the private engine of scripts/test.sh. Sets DOCKER_HOST for testcontainers and the CLIs.
 */
export function findEngine(): Promise<{ host: string } | { none: string }> {
  engine ??= (async () => {
    const set = process.env['DOCKER_HOST'];
    if (set) {
      if (!set.startsWith('unix://')) return { host: set }; // tcp/ssh: trusted as given
      return (await ping(set.slice('unix://'.length)))
        ? { host: set }
        : { none: `DOCKER_HOST=${set} does not answer` };
    }
    for (const sock of ['/var/run/docker.sock', PRIVATE_SOCKET]) {
      if (existsSync(sock) && (await ping(sock))) {
        process.env['DOCKER_HOST'] = `unix://${sock}`;
        return { host: process.env['DOCKER_HOST'] };
      }
    }
    return {
      none: 'no Docker engine (DOCKER_HOST unset, no /var/run/docker.sock; scripts/test.sh starts one as root)',
    };
  })();
  return engine;
}

let skipLinePrinted = false;

/**
 * For `before` hooks of container suites: resolves when an engine answers; otherwise marks the suite
 * skipped (pending, not passed) and prints, once per run, one line saying why.
 */
export async function requireEngine(ctx: Context): Promise<void> {
  const found = await findEngine();
  if ('none' in found) {
    if (!skipLinePrinted) {
      skipLinePrinted = true;
      process.stdout.write(`  [containers] container suites skipped: ${found.none}\n`);
    }
    ctx.skip();
  }
  // testcontainers' reaper (Ryuk) is an image pulled from Docker Hub, which no registry here serves:
  // the suites remove their containers and networks themselves.
  process.env['TESTCONTAINERS_RYUK_DISABLED'] ??= 'true';
}

/** Runs a command with the engine's DOCKER_HOST; resolves with stdout, rejects with CommandError. */
export function run(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { cwd: ROOT, env: { ...process.env, ...opts.env }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) reject(new CommandError(`${cmd} ${args.join(' ')}`, `${stdout}${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

/** The images the container suites run. */
export interface Images {
  readonly authz: string;
  readonly ratelimit: string;
  readonly acme: string;
  readonly node: string;
  readonly envoy: string;
  readonly redis: string;
  readonly pebble: string;
  readonly challtestsrv: string;
  /** NAME=image of the local base images, for `docker compose --env-file` (empty: the public images). */
  readonly envFile: string;
}

let images: Promise<Images> | undefined;

/**
 * Builds (or finds cached) the base and service images once per test process: deploy/images/build.sh,
 * which scripts/test.sh has usually run already (then this takes seconds).
 */
export function ensureImages(): Promise<Images> {
  images ??= (async () => {
    const envFile = process.env['EXTSVC_IMAGES_ENV'] ?? join(CACHE, 'images', 'base.env');
    await run('bash', ['deploy/images/build.sh'], { env: { EXTSVC_IMAGES_ENV: envFile } });
    const base = new Map<string, string>();
    for (const line of readFileSync(envFile, 'utf8').split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) base.set(line.slice(0, eq), line.slice(eq + 1));
    }
    return {
      authz: 'extsvc-authz',
      ratelimit: 'extsvc-ratelimit',
      acme: 'extsvc-acme',
      node: base.get('NODE_IMAGE') ?? 'node:24-slim',
      envoy: base.get('ENVOY_IMAGE') ?? 'envoyproxy/envoy:v1.40.0',
      redis: base.get('REDIS_IMAGE') ?? 'redis:7.4.1-alpine',
      pebble: base.get('PEBBLE_IMAGE') ?? 'ghcr.io/letsencrypt/pebble:2.7.0',
      challtestsrv: base.get('CHALLTESTSRV_IMAGE') ?? 'ghcr.io/letsencrypt/pebble-challtestsrv:2.7.0',
      envFile,
    };
  })();
  return images;
}

let composeCmd: Promise<string[]> | undefined;

/** The compose v2+ command: `docker compose`, or the compose CLI built into ~/.cache/extsvc. */
export function composeCommand(): Promise<string[]> {
  composeCmd ??= run('bash', ['deploy/images/compose.sh']).then((out) => out.trim().split(' '));
  return composeCmd;
}

/** Options of serviceContainer(). */
export interface ServiceContainerOptions {
  /** The service's admin port inside the container (its Dockerfile's ADMIN_PORT). */
  readonly adminPort: number;
  /** Other ports to map to the host. */
  readonly ports?: readonly number[];
  readonly env?: Record<string, string>;
  /** Files copied into the container before it starts: [host path or content, container path]. */
  readonly files?: ReadonlyArray<{ source?: string; content?: string; target: string }>;
  readonly network?: StartedNetwork;
  readonly aliases?: readonly string[];
}

/**
 * A service image as a testcontainers GenericContainer: admin listener opened to the host (ADMIN_HOST=0.0.0.0,
 * the default being loopback), ready when the admin /readyz answers 200 from the host side.
 */
export function serviceContainer(image: string, opts: ServiceContainerOptions): GenericContainer {
  let c = new GenericContainer(image)
    .withEnvironment({ ADMIN_HOST: '0.0.0.0', DRAIN_MS: '0', ...opts.env })
    .withExposedPorts(opts.adminPort, ...(opts.ports ?? []))
    .withPullPolicy(PullPolicy.defaultPolicy())
    .withWaitStrategy(Wait.forHttp('/readyz', opts.adminPort).forStatusCode(200))
    .withStartupTimeout(120_000);
  const files = opts.files ?? [];
  const fromHost = files.filter((f) => f.source !== undefined);
  const inline = files.filter((f) => f.content !== undefined);
  if (fromHost.length)
    c = c.withCopyFilesToContainer(fromHost.map((f) => ({ source: f.source!, target: f.target })));
  if (inline.length)
    c = c.withCopyContentToContainer(inline.map((f) => ({ content: f.content!, target: f.target })));
  if (opts.network) c = c.withNetwork(opts.network).withNetworkAliases(...(opts.aliases ?? []));
  return c;
}

/** Stops started containers (and then the network), whatever failed before; Ryuk is not there to do it. */
export async function stopAll(
  containers: ReadonlyArray<StartedTestContainer | undefined>,
  network?: StartedNetwork,
): Promise<void> {
  await Promise.allSettled(containers.filter((c) => c !== undefined).map((c) => c.stop({ timeout: 5_000 })));
  if (network) await network.stop();
}

/** The uid a container's main process runs as (from /proc/1/status). */
export async function containerUid(c: StartedTestContainer): Promise<number> {
  const r = await c.exec(['sh', '-c', "awk '/^Uid:/ { print $2 }' /proc/1/status"]);
  return Number(r.output.trim());
}
