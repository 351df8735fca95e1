import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

/** Folder for screenshots and other test artefacts (test-output/ at the repository root, git-ignored). */
export const TEST_OUTPUT = join(import.meta.dirname, '..', '..', 'test-output');

/** Chromium binary: CHROMIUM_BIN, else Debian's /usr/bin/chromium. */
export function chromiumPath(): string {
  return process.env['CHROMIUM_BIN'] ?? '/usr/bin/chromium';
}

/**
 * Launches Debian's Chromium headless through playwright-core, with the flags that keep it off the
 * network (this machine has no internet) and a throwaway HOME. close() removes it.
 */
export async function launchBrowser(): Promise<{
  browser: Browser;
  screenshotDir: string;
  close(): Promise<void>;
}> {
  const profile = mkdtempSync(join(tmpdir(), 'extsvc-chromium-'));
  const screenshotDir = join(TEST_OUTPUT, 'screenshots');
  mkdirSync(screenshotDir, { recursive: true });
  const browser = await chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    env: { ...process.env, HOME: profile },
  });
  return {
    browser,
    screenshotDir,
    close: async () => {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
