// Stryker on one core file at a time (issue 13):
//   npm run mutation:file -- services/authz/src/policy.ts [--exclude decision.test.ts,diag.test.ts]
// Writes a config derived from stryker.config.json to test-output/mutation/cfg/ that mutates only that
// file, runs its service's unit tests except server.test.ts (it starts listeners: a broken mutant waits
// out mocha's timeout) and the --exclude'd files, keeps its own incremental file and report
// (test-output/mutation/<service>-<file>.{html,json}), and ignores static mutants. Static: code run
// while test files load or in `before` hooks. The tests are ESM, which mocha cannot reload, so such a
// mutant costs a fresh worker process; a mutant that a test file reaches from a `before` hook as well
// as from its tests restarts the worker for every run too: --exclude such files for that source file
// (e.g. decision.test.ts parses its policy in `before`) or it takes hours instead of minutes.
// Prints the score row of the file (the README table) when done.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

const file = process.argv[2];
const ex = process.argv.indexOf('--exclude');
const excluded = new Set(['server.test.ts', ...(ex === -1 ? [] : (process.argv[ex + 1] ?? '').split(','))]);
const m = file === undefined ? null : /^services\/([\w-]+)\/src\/([\w/-]+)\.ts$/.exec(file);
if (file === undefined || m === null) {
  process.stderr.write('usage: npm run mutation:file -- services/<service>/src/<file>.ts\n');
  process.exit(2);
}
const [, service = '', name = ''] = m;
const id = `${service}-${name.replaceAll('/', '-')}`;
const out = 'test-output/mutation';
const base = JSON.parse(readFileSync('stryker.config.json', 'utf8')) as Record<string, unknown>;
const testDir = `services/${service}/test`;
const spec = readdirSync(testDir)
  .filter((f) => f.endsWith('.test.ts') && !excluded.has(f))
  .map((f) => join(testDir, f));
const config = {
  ...base,
  mutate: [file],
  mochaOptions: { config: '.mocharc.unit.json', spec },
  ignoreStatic: true,
  incrementalFile: `${out}/incremental-${id}.json`,
  tempDirName: `.stryker-tmp-${basename(name)}`,
  htmlReporter: { fileName: `${out}/${id}.html` },
  jsonReporter: { fileName: `${out}/${id}.json` },
};
mkdirSync(`${out}/cfg`, { recursive: true });
const cfg = `${out}/cfg/${id}.json`;
writeFileSync(cfg, JSON.stringify(config, null, 2));
const started = Date.now();
const run = spawnSync('npx', ['stryker', 'run', cfg], { stdio: 'inherit' });
const minutes = ((Date.now() - started) / 60_000).toFixed(1);
if (run.status !== 0) process.exit(run.status ?? 1);

interface Report {
  files: Record<string, { mutants: Array<{ status: string }> }>;
}
const report = JSON.parse(readFileSync(`${out}/${id}.json`, 'utf8')) as Report;
for (const [path, f] of Object.entries(report.files)) {
  const n = (s: string): number => f.mutants.filter((x) => x.status === s).length;
  const killed = n('Killed');
  const timeout = n('Timeout');
  const detected = killed + timeout;
  const total = detected + n('Survived') + n('NoCoverage');
  const score = total === 0 ? 100 : (100 * detected) / total;
  process.stdout.write(
    `| ${path} | ${killed} | ${n('Survived')} | ${timeout} | ${n('NoCoverage')} | ${n('Ignored')} | ${score.toFixed(2)} % | ${minutes} min |\n`,
  );
}
