import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { renderDiagHtml, diagHeader, type DiagDocument } from '../src/diag.ts';
import { HealthState } from '../src/health.ts';

describe('common/diag', () => {
  const health = new HealthState();
  health.set('config', true);
  health.set('redis', false, 'connecting');
  const doc: DiagDocument = {
    header: diagHeader('ratelimit', '1.2.3', health, health.startedAt + 3_725_000),
    sections: [
      {
        kind: 'kv',
        title: 'Backend',
        entries: [
          ['state', 'connected'],
          ['url', '<script>alert(1)</script>'],
        ],
      },
      {
        kind: 'table',
        title: 'Rules',
        columns: ['rule', 'result'],
        rows: [
          ['a', 'deny'],
          ['b', 'allow'],
        ],
      },
      { kind: 'table', title: 'Empty', columns: ['x'], rows: [], empty: 'nothing yet' },
      {
        kind: 'tree',
        title: 'Descriptors',
        nodes: [{ label: 'key_value', detail: '10/minute', children: [{ label: 'sub' }] }],
      },
      {
        kind: 'form',
        title: 'Look up',
        id: 'lookup',
        action: '/diag/lookup',
        fields: [{ name: 'domain', label: 'Domain', kind: 'text' }],
      },
    ],
  };

  it('renders the shared header with readiness components and uptime', () => {
    assert.equal(doc.header.uptimeSeconds, 3725);
    assert.equal(doc.header.serving, false);
    const html = renderDiagHtml(doc);
    assert.match(html, /<h1>ratelimit<\/h1>/);
    assert.match(html, /version 1\.2\.3 · up 1h 2m/);
    assert.match(
      html,
      /redis <span class="badge bad">not ready<\/span> <span class="meta">connecting<\/span>/,
    );
    assert.match(html, /<meta name="viewport"/);
  });

  it('escapes every value and colours states', () => {
    const html = renderDiagHtml(doc);
    assert.doesNotMatch(html, /<script>alert/);
    assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.match(html, /<span class="badge bad">deny<\/span>/);
    assert.match(html, /<span class="badge good">allow<\/span>/);
    assert.match(html, /nothing yet/);
    assert.match(html, /<form class="diag-form" id="lookup" data-action="\/diag\/lookup">/);
    assert.doesNotMatch(html, /https?:\/\/(?!127)/, 'no external assets');
  });
});
