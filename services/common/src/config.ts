import { accessSync, constants, statSync } from 'node:fs';
import { ConfigError, type ConfigProblem } from './errors.ts';

interface Base<T> {
  /** Environment variable read when the flag is absent. */
  readonly env?: string;
  /** One-line description shown by --help. */
  readonly doc: string;
  /** Value used when neither flag nor env var is set. */
  readonly default?: T;
  /** When true the option must be given (flag or env). */
  readonly required?: boolean;
  /** Redacted in the admin config view and in --help defaults. */
  readonly secret?: boolean;
}

/** Declarative option specifications; the parsed type follows from `kind`. */
export type OptionSpec =
  | (Base<string> & { readonly kind: 'string' })
  | (Base<number> & { readonly kind: 'int'; readonly min?: number; readonly max?: number })
  | (Base<number> & { readonly kind: 'float'; readonly min?: number; readonly max?: number })
  | (Base<number> & { readonly kind: 'port' })
  | (Base<boolean> & { readonly kind: 'bool' })
  | (Base<number> & { readonly kind: 'duration' })
  | (Base<string> & { readonly kind: 'enum'; readonly values: readonly string[] })
  | (Base<string> & { readonly kind: 'file' })
  | (Base<string> & { readonly kind: 'dir' })
  | (Base<readonly string[]> & { readonly kind: 'list' });

/** A set of options keyed by flag name (kebab-case, without the leading dashes). */
export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

type KindValue<S extends OptionSpec> = S['kind'] extends 'bool'
  ? boolean
  : S['kind'] extends 'int' | 'float' | 'port' | 'duration'
    ? number
    : S['kind'] extends 'list'
      ? readonly string[]
      : string;

type CamelCase<S extends string> = S extends `${infer H}-${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S;

/** The parsed configuration: camelCased flag names; options without default or `required` may be undefined. */
export type ParsedOptions<S extends OptionSpecs> = {
  readonly [K in keyof S & string as CamelCase<K>]: S[K] extends { default: unknown } | { required: true }
    ? KindValue<S[K]>
    : KindValue<S[K]> | undefined;
};

/** Result of parsing argv: either the options or a request for help. */
export type ParseResult<S extends OptionSpecs> =
  | { readonly kind: 'options'; readonly options: ParsedOptions<S> }
  | { readonly kind: 'help'; readonly text: string };

const camel = (s: string): string => s.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());

/** Parses a duration: plain milliseconds, or a number with ms, s, m or h. Returns undefined when invalid. */
export function parseDuration(raw: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? 'ms';
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000;
  return Math.round(n * factor);
}

function convert(spec: OptionSpec, raw: string): { value: unknown } | { error: string } {
  const shown = spec.secret ? '(redacted)' : `'${raw}'`;
  switch (spec.kind) {
    case 'string':
      return { value: raw };
    case 'int':
    case 'float': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n) || (spec.kind === 'int' && !Number.isInteger(n)))
        return { error: `must be ${spec.kind === 'int' ? 'an integer' : 'a number'}, got ${shown}` };
      if (spec.min !== undefined && n < spec.min) return { error: `must be >= ${spec.min}, got ${shown}` };
      if (spec.max !== undefined && n > spec.max) return { error: `must be <= ${spec.max}, got ${shown}` };
      return { value: n };
    }
    case 'port': {
      const n = Number(raw);
      if (!/^\d+$/.test(raw) || n > 65535) return { error: `must be a port number 0-65535, got ${shown}` };
      return { value: n };
    }
    case 'bool': {
      const v = raw.toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(v)) return { value: true };
      if (['false', '0', 'no', 'off', ''].includes(v)) return { value: false };
      return { error: `must be true or false, got ${shown}` };
    }
    case 'duration': {
      const d = parseDuration(raw);
      return d === undefined
        ? { error: `must be a duration like 500ms, 2s, 1m, got ${shown}` }
        : { value: d };
    }
    case 'enum':
      return spec.values.includes(raw)
        ? { value: raw }
        : { error: `must be one of ${spec.values.join(', ')}, got ${shown}` };
    case 'file':
    case 'dir': {
      try {
        const st = statSync(raw);
        if (spec.kind === 'file' && !st.isFile()) return { error: `not a regular file: '${raw}'` };
        if (spec.kind === 'dir' && !st.isDirectory()) return { error: `not a directory: '${raw}'` };
        accessSync(raw, constants.R_OK);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'error';
        return { error: `cannot read '${raw}' (${code})` };
      }
      return { value: raw };
    }
    case 'list':
      return {
        value: raw
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== ''),
      };
  }
}

/** Renders --help text from the specs. */
export function helpText(name: string, summary: string, specs: OptionSpecs): string {
  const lines = [
    `Usage: ${name} [options]`,
    '',
    summary,
    '',
    'Options (flag / environment variable, default):',
  ];
  for (const [flag, spec] of Object.entries(specs)) {
    const def =
      spec.default === undefined
        ? spec.required
          ? 'required'
          : 'unset'
        : spec.secret
          ? '(redacted)'
          : Array.isArray(spec.default)
            ? (spec.default as string[]).join(',')
            : String(spec.default);
    const kind = spec.kind === 'enum' ? spec.values.join('|') : spec.kind;
    lines.push(`  --${flag}=<${kind}>${spec.env ? `  (${spec.env})` : ''}  [${def}]`, `      ${spec.doc}`);
  }
  lines.push('  --help', '      Print this help and exit.');
  return lines.join('\n') + '\n';
}

/**
 * Parses flags (`--name=value`, `--name value`, `--flag`, `--no-flag`) and environment variables
 * against the specs. Precedence: flag, then env var, then default. Every problem is collected and
 * thrown together as a ConfigError naming its flag or variable.
 */
export function parseOptions<S extends OptionSpecs>(
  specs: S,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  meta: { name: string; summary: string },
): ParseResult<S> {
  const problems: ConfigProblem[] = [];
  const fromFlags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h')
      return { kind: 'help', text: helpText(meta.name, meta.summary, specs) };
    if (!arg.startsWith('--')) {
      problems.push({ field: arg, message: 'unexpected argument (options are --name=value)' });
      continue;
    }
    const eq = arg.indexOf('=');
    let name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    let value: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    let spec = specs[name];
    if (!spec && value === undefined && name.startsWith('no-') && specs[name.slice(3)]?.kind === 'bool') {
      name = name.slice(3);
      spec = specs[name];
      value = 'false';
    }
    if (!spec) {
      problems.push({ field: `--${name}`, message: 'unknown flag (see --help)' });
      continue;
    }
    if (value === undefined) {
      if (spec.kind === 'bool') value = 'true';
      else {
        const next = argv[i + 1];
        if (next === undefined || next.startsWith('--')) {
          problems.push({ field: `--${name}`, message: 'missing value' });
          continue;
        }
        value = next;
        i++;
      }
    }
    fromFlags.set(name, value);
  }
  const out: Record<string, unknown> = {};
  for (const [flag, spec] of Object.entries(specs)) {
    let raw: string | undefined;
    let field = `--${flag}`;
    if (fromFlags.has(flag)) raw = fromFlags.get(flag);
    else if (spec.env !== undefined && env[spec.env] !== undefined && env[spec.env] !== '') {
      raw = env[spec.env];
      field = spec.env;
    }
    if (raw === undefined) {
      if (spec.default !== undefined) out[camel(flag)] = spec.default;
      else if (spec.required)
        problems.push({ field: `--${flag}`, message: `required${spec.env ? ` (or set ${spec.env})` : ''}` });
      else out[camel(flag)] = undefined;
      continue;
    }
    const r = convert(spec, raw);
    if ('error' in r) problems.push({ field, message: r.error });
    else out[camel(flag)] = r.value;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { kind: 'options', options: Object.freeze(out) as ParsedOptions<S> };
}

/** A view of the parsed options for the admin port: secret values replaced by `(redacted)`. */
export function redactedView(
  specs: OptionSpecs,
  options: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const view: Record<string, unknown> = {};
  for (const [flag, spec] of Object.entries(specs)) {
    const v = options[camel(flag)];
    view[flag] = spec.secret && v !== undefined ? '(redacted)' : v;
  }
  return view;
}

/** Deep-freezes a plain object graph (configuration is data, frozen once validated). */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}
