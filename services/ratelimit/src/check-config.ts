#!/usr/bin/env node
// Validates a directory of rate limit files like the reference's config_check_cmd: prints
// "all rate limit configs ok" and exits 0, or "error loading rate limit configs: <message>" and exits 1.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { RulesError } from './errors.ts';
import { buildRuleSet, type RulesFile } from './rules.ts';

/** Result of a check: the lines to print and the exit code. */
export interface CheckResult {
  readonly lines: readonly string[];
  readonly exitCode: number;
}

/** Parses `-config_dir DIR`, `--config-dir=DIR`, `-merge_domain_configs`, `--merge-domain-configs`. */
export function parseCheckArgs(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): { dir: string; merge: boolean } {
  let dir = env['CONFIG_DIR'] ?? '';
  let merge = ['true', '1'].includes((env['MERGE_DOMAIN_CONFIG'] ?? '').toLowerCase());
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const [name, inline] = a.includes('=')
      ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]
      : [a, undefined];
    const flag = name.replace(/^--?/, '').replace(/_/g, '-');
    if (flag === 'config-dir') {
      dir = inline ?? argv[++i] ?? '';
    } else if (flag === 'merge-domain-configs' || flag === 'merge-domain-config') {
      merge = inline === undefined ? true : ['true', '1'].includes(inline.toLowerCase());
    }
  }
  return { dir, merge };
}

/** Checks every file of `dir` (non-recursive, as the reference), names being `dir/file`. */
export function checkConfigDir(dir: string, merge: boolean): CheckResult {
  const lines = ['checking rate limit configs...', `loading config directory: ${dir}`];
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    lines.push(`error opening directory ${dir}: ${err instanceof Error ? err.message : String(err)}`);
    return { lines, exitCode: 1 };
  }
  const files: RulesFile[] = [];
  for (const name of names) {
    if (name.startsWith('..')) continue;
    const path = join(dir, name);
    try {
      if (!statSync(path).isFile()) continue;
      lines.push(`opening config file: ${path}`);
      files.push({ name: path, content: readFileSync(path, 'utf8') });
    } catch (err) {
      lines.push(`error reading file ${path}: ${err instanceof Error ? err.message : String(err)}`);
      return { lines, exitCode: 1 };
    }
  }
  try {
    buildRuleSet(files, { mergeDomains: merge });
  } catch (err) {
    if (!(err instanceof RulesError)) throw err;
    lines.push(`error loading rate limit configs: ${err.message}`);
    return { lines, exitCode: 1 };
  }
  lines.push('all rate limit configs ok');
  return { lines, exitCode: 0 };
}

if (import.meta.main) {
  const { dir, merge } = parseCheckArgs(process.argv.slice(2), process.env);
  const r = checkConfigDir(dir, merge);
  process.stdout.write(r.lines.join('\n') + '\n');
  process.exitCode = r.exitCode;
}
