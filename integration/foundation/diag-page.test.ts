import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { registerDiag } from '../../services/common/src/diag.ts';
import { HealthState } from '../../services/common/src/health.ts';
import { launchBrowser } from '../harness/browser.ts';

describe('common /diag page in headless Chromium', function () {
  this.timeout(60_000);
  let app: FastifyInstance;
  let base: string;
  let browser: Awaited<ReturnType<typeof launchBrowser>>;
  before(async () => {
    const health = new HealthState();
    health.set('config', true);
    app = Fastify();
    registerDiag(app, {
      service: 'demo',
      version: '0.0.1',
      health,
      sections: () => [
        { kind: 'table', title: 'Things', columns: ['name', 'state'], rows: [['one', 'ready']] },
        {
          kind: 'form',
          title: 'Echo',
          id: 'echo',
          action: '/diag/echo',
          fields: [{ name: 'word', label: 'Word', kind: 'text' }],
        },
      ],
    });
    app.post('/diag/echo', async (req) => ({ echoed: (req.body as { word: string }).word }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    const addr = app.server.address();
    base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await app?.close();
  });

  it('renders on a phone-sized viewport and runs a form without reloading', async () => {
    const page = await browser.browser.newPage({ viewport: { width: 390, height: 844 } });
    await page.goto(`${base}/diag`);
    assert.equal(await page.locator('h1').textContent(), 'demo');
    assert.equal(await page.locator('#things td').first().textContent(), 'one');
    const scrollWidth = await page.evaluate<number>('document.documentElement.scrollWidth');
    assert.ok(scrollWidth <= 390, `page wider than the phone: ${scrollWidth}`);
    await page.fill('#echo input[name=word]', 'hello');
    await page.click('#echo button');
    await page.locator('#echo .result', { hasText: 'echoed' }).waitFor();
    assert.match(
      (await page.locator('#echo .result').textContent()) ?? '',
      /HTTP 200[\s\S]*"echoed": "hello"/,
    );
    await page.screenshot({ path: join(browser.screenshotDir, 'common-diag-phone.png'), fullPage: true });
    await page.close();
  });
});
