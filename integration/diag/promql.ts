// Just enough PromQL reading to list the metric names an expression refers to.

const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'inf',
  'nan',
]);

/**
 * Metric names referred to by a PromQL expression: identifiers that are not functions or
 * aggregations (followed by `(`), keywords, label names (inside `{}` and `by (...)`-like clauses),
 * durations (`[5m]`, `offset 1d`), strings, numbers or Grafana variables (`$__rate_interval`).
 */
export function promqlMetricNames(expr: string): string[] {
  let s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*/g, ' ');
  s = s.replace(/\{[^{}]*\}/g, ' ').replace(/\[[^\]]*\]/g, ' ');
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  s = s.replace(/\boffset\s+-?[0-9a-z]+/gi, ' ');
  const names = new Set<string>();
  const token = /(\d+(?:\.\d+)?(?:e[+-]?\d+)?)|([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?/gi;
  for (const m of s.matchAll(token)) {
    const id = m[2];
    if (id === undefined || m[3] !== undefined || KEYWORDS.has(id.toLowerCase())) continue;
    names.add(id);
  }
  return [...names];
}

/** Exported metric names (from `# TYPE` lines) with their type; histograms also allow `_bucket/_sum/_count`. */
export function exportedMetricNames(exposition: string): Set<string> {
  const out = new Set<string>();
  for (const line of exposition.split('\n')) {
    const m = /^# TYPE ([A-Za-z_:][A-Za-z0-9_:]*) (\w+)/.exec(line);
    if (!m) continue;
    const [, name, type] = m as unknown as [string, string, string];
    out.add(name);
    if (type === 'histogram') for (const sfx of ['_bucket', '_sum', '_count']) out.add(name + sfx);
    if (type === 'summary') for (const sfx of ['_sum', '_count']) out.add(name + sfx);
  }
  return out;
}

/** Parentheses, brackets and braces balance (a cheap syntax check without promtool). */
export function balanced(expr: string): boolean {
  const stack: string[] = [];
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  const s = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  for (const ch of s) {
    if (ch === '(' || ch === '[' || ch === '{') stack.push(ch);
    else if (ch in pairs && stack.pop() !== pairs[ch]) return false;
  }
  return stack.length === 0;
}
