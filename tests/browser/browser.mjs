// Shared set-up for the browser tests: Debian's Chromium, headless, driven by playwright-core.
// A test script is `node tests/browser/<name>.mjs` started by a python test (tests/lib/browser.py)
// that has already started the processes; it reads its addresses and tokens from the
// environment, exits 0 when every check passed and prints the failing check otherwise.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

// Without the background-networking flags Chromium keeps dialling Google's hosts, which this
// machine's closed network refuses.
const FLAGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage'];

export function env(name) {
  const v = process.env[name];
  if (v === undefined || v === '') throw new Error(`environment variable ${name} is not set`);
  return v;
}

// Runs fn(page, ctx) in a fresh browser; fails the process on an exception, a page error or a
// console error (a CSP violation shows up there).
export async function run(fn) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: FLAGS, timeout: 60000 });
  const errors = [];
  let code = 0;
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    context.setDefaultTimeout(Number(process.env.BROWSER_TIMEOUT_MS || 15000));
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    // Chromium logs every 4xx answer to fetch() as "Failed to load resource"; the pages show
    // those to the user on purpose (a wrong code is a 403), so only other console errors, such
    // as a CSP refusal, fail the test.
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
        errors.push(`console error: ${m.text()}`);
      }
    });
    await fn(page, { context, errors });
    if (errors.length) throw new Error(errors.join('\n'));
  } catch (e) {
    console.error(`FAIL: ${e && e.stack ? e.stack : e}`);
    code = 1;
  } finally {
    await browser.close();
  }
  process.exit(code);
}

// Saves a screenshot under $SCREENSHOT_DIR (when set) as NAME.png.
export async function screenshot(page, name) {
  const dir = process.env.SCREENSHOT_DIR;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true });
}

export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}
