import type { FastifyInstance } from 'fastify';
import type { HealthState } from './health.ts';

/** A scalar shown in a diagnostics cell. */
export type DiagValue = string | number | boolean | null | undefined;

/** One node of a tree section (ratelimit descriptor trees). */
export interface DiagTreeNode {
  readonly label: string;
  readonly detail?: string;
  readonly children?: readonly DiagTreeNode[];
}

/** A field of a diagnostics form. */
export interface DiagFormField {
  readonly name: string;
  readonly label: string;
  readonly kind: 'text' | 'textarea' | 'select';
  readonly options?: readonly string[];
  readonly placeholder?: string;
  readonly value?: string;
}

/** A block of the diagnostics page; /diag.json carries the same objects. */
export type DiagSection =
  | {
      readonly kind: 'kv';
      readonly title: string;
      readonly entries: ReadonlyArray<readonly [string, DiagValue]>;
    }
  | {
      readonly kind: 'table';
      readonly title: string;
      readonly columns: readonly string[];
      readonly rows: ReadonlyArray<readonly DiagValue[]>;
      readonly empty?: string;
    }
  | { readonly kind: 'tree'; readonly title: string; readonly nodes: readonly DiagTreeNode[] }
  | { readonly kind: 'text'; readonly title: string; readonly text: string }
  | {
      readonly kind: 'form';
      readonly title: string;
      readonly id: string;
      /** Admin path the form POSTs its fields to as JSON; the JSON answer is shown below the form. */
      readonly action: string;
      readonly fields: readonly DiagFormField[];
      readonly note?: string;
    };

/** The header shared by every service's page. */
export interface DiagHeader {
  readonly service: string;
  readonly version: string;
  readonly uptimeSeconds: number;
  readonly serving: boolean;
  readonly draining: boolean;
  readonly components: Record<string, { ready: boolean; detail?: string }>;
  readonly generatedAt: string;
}

/** The whole page as data (GET /diag.json). */
export interface DiagDocument {
  readonly header: DiagHeader;
  readonly sections: readonly DiagSection[];
}

const esc = (v: DiagValue): string =>
  String(v ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');

const GOOD = /^(ready|allow|ok|serving|true|valid|loaded|connected|within_limit)$/i;
const BAD = /^(error|deny|denied|not ready|not_serving|false|over_limit|failed|invalid|disconnected)$/i;
const WARN = /^(pending|initial|stale|draining|near_limit|renewing|shadow)$/i;

function cell(v: DiagValue): string {
  const s = String(v ?? '');
  const cls = GOOD.test(s) ? 'good' : BAD.test(s) ? 'bad' : WARN.test(s) ? 'warn' : '';
  return cls ? `<span class="badge ${cls}">${esc(s)}</span>` : esc(s);
}

function duration(seconds: number): string {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s}s` : `${s}s`;
}

function tree(nodes: readonly DiagTreeNode[]): string {
  return `<ul class="tree">${nodes
    .map(
      (n) =>
        `<li><span class="node">${esc(n.label)}</span>${n.detail ? ` <span class="detail">${esc(n.detail)}</span>` : ''}${
          n.children && n.children.length > 0 ? tree(n.children) : ''
        }</li>`,
    )
    .join('')}</ul>`;
}

function section(s: DiagSection): string {
  const id = s.title.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  switch (s.kind) {
    case 'kv':
      return `<section id="${id}"><h2>${esc(s.title)}</h2><dl>${s.entries
        .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${cell(v)}</dd>`)
        .join('')}</dl></section>`;
    case 'table':
      return `<section id="${id}"><h2>${esc(s.title)}</h2>${
        s.rows.length === 0
          ? `<p class="empty">${esc(s.empty ?? 'none')}</p>`
          : `<div class="scroll"><table><thead><tr>${s.columns.map((c) => `<th>${esc(c)}</th>`).join('')}</tr></thead><tbody>${s.rows
              .map((r) => `<tr>${r.map((v) => `<td>${cell(v)}</td>`).join('')}</tr>`)
              .join('')}</tbody></table></div>`
      }</section>`;
    case 'tree':
      return `<section id="${id}"><h2>${esc(s.title)}</h2>${s.nodes.length === 0 ? '<p class="empty">none</p>' : tree(s.nodes)}</section>`;
    case 'text':
      return `<section id="${id}"><h2>${esc(s.title)}</h2><pre>${esc(s.text)}</pre></section>`;
    case 'form':
      return `<section id="${id}"><h2>${esc(s.title)}</h2>${s.note ? `<p class="note">${esc(s.note)}</p>` : ''}<form class="diag-form" id="${esc(
        s.id,
      )}" data-action="${esc(s.action)}">${s.fields
        .map((f) => {
          const input =
            f.kind === 'textarea'
              ? `<textarea name="${esc(f.name)}" rows="4" placeholder="${esc(f.placeholder)}">${esc(f.value)}</textarea>`
              : f.kind === 'select'
                ? `<select name="${esc(f.name)}">${(f.options ?? [])
                    .map((o) => `<option${o === f.value ? ' selected' : ''}>${esc(o)}</option>`)
                    .join('')}</select>`
                : `<input name="${esc(f.name)}" value="${esc(f.value)}" placeholder="${esc(f.placeholder)}">`;
          return `<label>${esc(f.label)}${input}</label>`;
        })
        .join(
          '',
        )}<button type="submit">Run</button><pre class="result" aria-live="polite"></pre></form></section>`;
  }
}

const CSS = `
:root{--bg:#f6f7f9;--fg:#1c2430;--muted:#5b6675;--card:#fff;--line:#dde2e8;--good:#137333;--bad:#b3261e;--warn:#8a5a00;--accent:#1a56db}
@media (prefers-color-scheme:dark){:root{--bg:#12161c;--fg:#e6e9ee;--muted:#9aa4b2;--card:#1b2129;--line:#2c343f;--good:#6fd08c;--bad:#ff8a80;--warn:#ffcc66;--accent:#8ab4f8}}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{background:var(--card);border-bottom:1px solid var(--line);padding:12px 16px;display:flex;flex-wrap:wrap;gap:8px 18px;align-items:center}
header h1{font-size:18px;margin:0}header .meta{color:var(--muted);font-size:13px}
main{max-width:1500px;margin:0 auto;padding:12px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;margin:12px 0}
h2{font-size:15px;margin:0 0 8px}dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px;margin:0}dt{color:var(--muted)}dd{margin:0;word-break:break-word}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:14px}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}th{color:var(--muted);font-weight:600;white-space:nowrap}
.badge{display:inline-block;padding:0 7px;border-radius:10px;font-size:12.5px;font-weight:600;border:1px solid currentColor}.good{color:var(--good)}.bad{color:var(--bad)}.warn{color:var(--warn)}
.empty,.note{color:var(--muted);margin:0}.tree{margin:0;padding-left:18px}.tree .node{font-family:ui-monospace,monospace}.tree .detail{color:var(--muted);font-size:13px}
pre{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:8px;overflow-x:auto;font-size:13px;white-space:pre-wrap;word-break:break-word}pre:empty{display:none}
form label{display:block;margin:6px 0;color:var(--muted);font-size:13px}input,select,textarea{display:block;width:100%;margin-top:2px;padding:7px;font:inherit;color:var(--fg);background:var(--bg);border:1px solid var(--line);border-radius:6px}
@media (max-width:640px){dl{grid-template-columns:minmax(0,1fr);gap:0}dt{margin-top:6px}header{padding:10px 12px}main{padding:8px}}
button{margin-top:8px;padding:8px 16px;font:inherit;font-weight:600;color:#fff;background:var(--accent);border:0;border-radius:6px;cursor:pointer}
`;

const SCRIPT = `
for (const form of document.querySelectorAll('form.diag-form')) {
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const out = form.querySelector('.result');
    out.textContent = '...';
    const body = Object.fromEntries(new FormData(form).entries());
    try {
      const res = await fetch(form.dataset.action, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const text = await res.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch {}
      out.textContent = 'HTTP ' + res.status + '\\n' + shown;
      out.dataset.status = String(res.status);
    } catch (err) { out.textContent = 'request failed: ' + err; }
  });
}
`;

/** Renders the diagnostics document as one self-contained HTML page (no external assets). */
export function renderDiagHtml(doc: DiagDocument): string {
  const h = doc.header;
  const components = Object.entries(h.components)
    .map(
      ([k, c]) =>
        `${esc(k)} ${cell(c.ready ? 'ready' : 'not ready')}${c.detail ? ` <span class="meta">${esc(c.detail)}</span>` : ''}`,
    )
    .join(' · ');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(h.service)} diagnostics</title><style>${CSS}</style></head><body>
<header><h1>${esc(h.service)}</h1><span class="meta">version ${esc(h.version)} · up ${esc(duration(h.uptimeSeconds))} · ${esc(h.generatedAt)}</span>
<span id="readiness">${cell(h.draining ? 'draining' : h.serving ? 'ready' : 'not ready')}</span><span class="meta">${components}</span></header>
<main>${doc.sections.map(section).join('\n')}</main><script>${SCRIPT}</script></body></html>`;
}

/** Builds the shared header from the runtime. */
export function diagHeader(
  service: string,
  version: string,
  health: HealthState,
  now = Date.now(),
): DiagHeader {
  const snap = health.snapshot();
  return {
    service,
    version,
    uptimeSeconds: Math.round((now - health.startedAt) / 1000),
    serving: snap.serving,
    draining: snap.draining,
    components: snap.components,
    generatedAt: new Date(now).toISOString(),
  };
}

/** Fastify's parsed query as string values (a repeated parameter keeps its first value). */
function queryRecord(query: unknown): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  if (query === null || typeof query !== 'object') return out;
  for (const [k, v] of Object.entries(query as Record<string, unknown>)) {
    const s: unknown = Array.isArray(v) ? v[0] : v;
    if (typeof s === 'string') out[k] = s;
  }
  return out;
}

/** Registers GET /diag (HTML) and GET /diag.json on an admin server. */
export function registerDiag(
  app: FastifyInstance,
  opts: {
    service: string;
    version: string;
    health: HealthState;
    /** Builds the sections; `query` is the page's query string (filters such as `request_id`). */
    sections: (
      query: Readonly<Record<string, string | undefined>>,
    ) => readonly DiagSection[] | Promise<readonly DiagSection[]>;
  },
): void {
  const build = async (query: unknown): Promise<DiagDocument> => ({
    header: diagHeader(opts.service, opts.version, opts.health),
    sections: await opts.sections(queryRecord(query)),
  });
  app.get('/diag.json', async (req) => build(req.query));
  app.get('/diag', async (req, reply) =>
    reply
      .header('content-type', 'text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .header(
        'content-security-policy',
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; form-action 'self'",
      )
      .send(renderDiagHtml(await build(req.query))),
  );
}
