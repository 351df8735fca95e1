// Behaviour comparison with envoyproxy/ratelimit: both servers read the same configuration (the
// reference's RUNTIME_ROOT layout), count in the same redis-server under different prefixes, and
// answer the same POST /json requests; responses are compared after masking the seconds to reset.
//
//   node bench/ratelimit/compare.ts --ref-bin /tmp/rlbench/bin/ratelimit
//
// Prints one line per case ("same" or both answers) and exits 1 when any answer differs.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = join(import.meta.dirname, '..', '..');
const FIXTURES = join(ROOT, 'services', 'ratelimit', 'test', 'fixtures', 'good');
const { values: opt } = parseArgs({
  options: { 'ref-bin': { type: 'string' }, 'redis-port': { type: 'string', default: '26381' } },
});

const MODES = `domain: modes
descriptors:
  - key: shadow
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: quota
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: regular
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: detailed
    detailed_metric: true
    rate_limit: {unit: minute, requests_per_unit: 10}
`;

type Body = Record<string, unknown> | string;
const e = (key: string, value?: string): Record<string, string> =>
  value === undefined ? { key } : { key, value };
const one = (domain: string, ...entries: Array<Record<string, string>>): Body => ({
  domain,
  descriptors: [{ entries }],
});
const CASES: Array<[string, Body]> = [
  ['key-only default', one('test-domain', e('key2', 'x'))],
  ['nested default', one('test-domain', e('key1', 'value1'), e('subkey1', 'y'))],
  ['nested exact', one('test-domain', e('key1', 'value1'), e('subkey1', 'subvalue1'))],
  ['depth mismatch', one('test-domain', e('key1', 'value1'))],
  ['whitelisted value', one('test-domain', e('key2', 'value3'))],
  ['no match', one('test-domain', e('nope', 'x'))],
  ['unknown domain', one('nodomain', e('key2', 'x'))],
  ['unlimited', one('test-domain', e('key6', 'x'))],
  ['blocked (0 per unit)', one('test-domain', e('blocked', 'x'))],
  ['week unit', one('test-domain', e('key7', 'x'))],
  ['empty value', one('test-domain', e('key2'))],
  ['trailing wildcard', one('wildcard', e('wild', 'foo1'))],
  ['explicit beats wildcard', one('wildcard', e('file', 'test1'))],
  ['wildcard matches empty value', one('wildcard', e('any', ''))],
  [
    'share_threshold',
    {
      domain: 'wildcard',
      descriptors: [{ entries: [e('files', 'files/a')] }, { entries: [e('files', 'files/b')] }],
    },
  ],
  [
    'replaces',
    { domain: 'replaces', descriptors: [{ entries: [e('key1', 'x')] }, { entries: [e('key2', 'x')] }] },
  ],
  [
    'replaced by unlimited',
    { domain: 'replaces', descriptors: [{ entries: [e('key1', 'x')] }, { entries: [e('key3', 'x')] }] },
  ],
  ['name in current_limit', one('replaces', e('key1', 'n'))],
  ['shadow first', one('modes', e('shadow', 'x'))],
  ['shadow over', one('modes', e('shadow', 'x'))],
  ['regular first', one('modes', e('regular', 'x'))],
  ['regular over', one('modes', e('regular', 'x'))],
  [
    'override',
    {
      domain: 'modes',
      descriptors: [{ entries: [e('zz', 'o')], limit: { requestsPerUnit: 3, unit: 'HOUR' } }],
    },
  ],
  [
    'hits_addend request and descriptor',
    {
      domain: 'test-domain',
      hitsAddend: 5,
      descriptors: [{ entries: [e('key2', 'h')] }, { entries: [e('key2', 'h2')], hitsAddend: '0' }],
    },
  ],
  [
    'hits_addend over at once',
    { domain: 'test-domain', descriptors: [{ entries: [e('key2', 'h3')], hitsAddend: 25 }] },
  ],
  [
    'original field names',
    { domain: 'test-domain', hits_addend: 1, descriptors: [{ entries: [e('key3', 's')] }] },
  ],
  ['zero entries', { domain: 'test-domain', descriptors: [{ entries: [] }] }],
  ['empty domain', one('', e('key2', 'x'))],
  ['no descriptors', { domain: 'test-domain', descriptors: [] }],
  ['unknown field', { domain: 'test-domain', bogus: 1 }],
  ['bad JSON', '{'],
];

const procs: ChildProcess[] = [];
process.on('exit', () => procs.forEach((p) => p.kill('SIGKILL')));
const start = (cmd: string, args: string[], env: Record<string, string>): ChildProcess => {
  const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: 'ignore' });
  procs.push(p);
  return p;
};
async function waitHttp(url: string): Promise<void> {
  for (const end = Date.now() + 30_000; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      /* not yet */
    }
  }
  throw new Error(`timed out waiting for ${url}`);
}
const sortKeys = (v: unknown): unknown =>
  Array.isArray(v)
    ? v.map(sortKeys)
    : v && typeof v === 'object'
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]),
        )
      : v;
const mask = (t: string): string =>
  t
    .replace(/"durationUntilReset":"\d+s"/g, '"durationUntilReset":"Ns"')
    .replace(/("key":"RateLimit-Reset","value":")\d+"/g, '$1N"');

async function main(): Promise<void> {
  if (!opt['ref-bin'])
    throw new Error('--ref-bin is required (bench/ratelimit/build-reference.sh builds it)');
  const dir = mkdtempSync(join(tmpdir(), 'rl-compare-'));
  const cfg = join(dir, 'runtime', 'rl', 'config');
  mkdirSync(cfg, { recursive: true });
  for (const f of ['basic_config.yaml', 'wildcard.yaml', 'replaces.yaml'])
    copyFileSync(join(FIXTURES, f), join(cfg, f));
  writeFileSync(join(cfg, 'modes.yaml'), MODES);
  const redisPort = opt['redis-port'];
  start(
    'redis-server',
    ['--port', redisPort, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    {},
  );
  await new Promise((r) => setTimeout(r, 400));
  const common = {
    LIMIT_RESPONSE_HEADERS_ENABLED: 'true',
    RUNTIME_ROOT: join(dir, 'runtime'),
    RUNTIME_SUBDIRECTORY: 'rl',
    RUNTIME_APPDIRECTORY: 'config',
    RUNTIME_WATCH_ROOT: 'false',
    RUNTIME_IGNOREDOTFILES: 'true',
    REDIS_SOCKET_TYPE: 'tcp',
    REDIS_URL: `127.0.0.1:${redisPort}`,
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
    GRPC_HOST: '127.0.0.1',
  };
  start(opt['ref-bin'], [], {
    ...common,
    USE_STATSD: 'false',
    DISABLE_STATS: 'true',
    CACHE_KEY_PREFIX: 'ref:',
    PORT: '29180',
    GRPC_PORT: '29181',
    DEBUG_HOST: '127.0.0.1',
    DEBUG_PORT: '29170',
  });
  start(process.execPath, [join(ROOT, 'services', 'ratelimit', 'src', 'main.ts')], {
    ...common,
    CACHE_KEY_PREFIX: 'ts:',
    PORT: '39180',
    GRPC_PORT: '39181',
    ADMIN_HOST: '127.0.0.1',
    ADMIN_PORT: '39170',
  });
  await waitHttp('http://127.0.0.1:29180/healthcheck');
  await waitHttp('http://127.0.0.1:39180/healthcheck');
  // Stay inside one minute so that both servers see the same windows.
  const left = 60 - ((Date.now() / 1000) % 60);
  if (left < 10) await new Promise((r) => setTimeout(r, left * 1000 + 100));
  let diffs = 0;
  for (const [name, body] of CASES) {
    const answers: string[] = [];
    for (const port of [29180, 39180]) {
      const r = await fetch(`http://127.0.0.1:${port}/json`, {
        method: 'POST',
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      let text = (await r.text()).trim();
      try {
        text = JSON.stringify(sortKeys(JSON.parse(text)));
      } catch {
        /* plain text error */
      }
      answers.push(`${r.status} ${mask(text)}`);
    }
    if (answers[0] === answers[1]) process.stdout.write(`same  ${name}: ${answers[0]}\n`);
    else {
      diffs++;
      process.stdout.write(`DIFF  ${name}\n  reference: ${answers[0]}\n  ours:      ${answers[1]}\n`);
    }
  }
  process.stdout.write(
    `${CASES.length - diffs}/${CASES.length} identical (redis commands seen: ${execFileSync('redis-cli', ['-p', redisPort, 'DBSIZE'], { encoding: 'utf8' }).trim()} keys)\n`,
  );
  for (const p of procs) p.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  rmSync(dir, { recursive: true, force: true });
  process.exitCode = diffs > 0 ? 1 : 0;
}

await main();
