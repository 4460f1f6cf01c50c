// A page on a phone: 390 px wide (an iPhone 12-15 in portrait). Signs in with TOKEN, waits for
// the page's main view (and, in the support console, opens ACCOUNT), then checks in English and
// in Korean that nothing is wider than the screen (no horizontal scroll: the document and every
// visible element end within 390 px) and, in Korean, that no English word of the page's own
// text is left (values such as account ids, IPs, codes and route names are the data's, not the
// page's: EXEMPT lists them).
// Env: URL, PAGE (player | support | dashboard), TOKEN, ACCOUNT (support), EXEMPT (words
// separated by spaces that may appear in Korean: the test's data).
import { run, env, check, screenshot } from './browser.mjs';

const PAGE = env('PAGE');
const WIDTH = 390;
const EXEMPT = new Set((process.env.EXEMPT || '').split(/\s+/).filter(Boolean).map((w) => w.toLowerCase()));

async function waitText(page, sel, text) {
  await page.waitForFunction(([s, t]) => {
    const e = document.querySelector(s);
    return e && !e.closest('[hidden]') && e.textContent.includes(t);
  }, [sel, text]);
}

// What sticks out past the right edge: the document's width and the widest elements.
async function overflow(page) {
  return page.evaluate((w) => {
    const out = [];
    const doc = document.documentElement.scrollWidth;
    if (doc > w) out.push(`document ${doc} px`);
    for (const e of document.querySelectorAll('body *')) {
      if (e.closest('[hidden]') || e.closest('.sr-only')) continue;
      const r = e.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      // inside a box that scrolls on its own (a wide table in its wrapper) is fine
      let clipped = false;
      for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
        const s = getComputedStyle(p);
        if (s.overflowX === 'auto' || s.overflowX === 'scroll' || s.overflowX === 'hidden') {
          clipped = true; break;
        }
      }
      if (!clipped && r.right > w + 0.5) {
        out.push(`${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : ''} ends at ${Math.round(r.right)} px`);
      }
    }
    return out.slice(0, 8);
  }, WIDTH);
}

// The English words the page shows (visible text, placeholders, titles, aria-labels).
async function englishWords(page) {
  const words = await page.evaluate(() => {
    const texts = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!el || el.closest('[hidden]') || el.closest('script') || el.closest('style')) continue;
      // addresses, ids, an endpoint's own error message: the data's own
      if (el.closest('.mono, code, pre, .verbatim')) continue;
      // the language switch names the other language in that language ("English"), as
      // language menus do
      if (el.closest('#lang')) continue;
      texts.push(n.textContent);
    }
    for (const e of document.querySelectorAll('[placeholder], [title], [aria-label]')) {
      if (e.closest('[hidden]') || e.closest('#lang')) continue;
      for (const a of ['placeholder', 'title', 'aria-label']) {
        if (e.getAttribute(a)) texts.push(e.getAttribute(a));
      }
    }
    texts.push(document.title);
    return texts.join(' ').match(/[A-Za-z][A-Za-z']{2,}/g) || [];
  });
  return [...new Set(words)].filter((w) => !EXEMPT.has(w.toLowerCase()));
}

async function signIn(page) {
  await page.waitForSelector('#signin:not([hidden])');
  await page.fill('#token', env('TOKEN'));
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#app:not([hidden])');
  if (PAGE === 'player') {
    await page.waitForFunction(() => document.querySelectorAll('#rows tr').length > 0);
    await page.waitForSelector('#policies input');
  } else if (PAGE === 'support') {
    await page.fill('#query', env('ACCOUNT'));
    await page.click('#find-form button[type=submit]');
    await page.click(`#results button:has-text("${env('ACCOUNT')}")`);
    await waitText(page, '#acct-id', env('ACCOUNT'));
    await page.waitForFunction(() => document.querySelectorAll('#logins tr').length > 0);
  } else if (PAGE === 'dashboard') {
    await page.waitForSelector('#graph svg');
    await page.waitForFunction(() => document.querySelectorAll('#routes tr').length > 0);
  }
}

// The page's language button switches to Korean (the pages remember it).
async function toKorean(page) {
  const lang = await page.evaluate(() => document.documentElement.lang);
  if (lang !== 'ko') await page.click('#lang');
  await page.waitForFunction(() => document.documentElement.lang === 'ko');
}

await run(async (page, { context }) => {
  await page.setViewportSize({ width: WIDTH, height: 844 });
  await page.goto(env('URL'));
  await page.waitForSelector('#signin:not([hidden])');
  let wide = await overflow(page);
  check(wide.length === 0, `sign-in at ${WIDTH} px: ${wide.join('; ')}`);
  if (await page.$('#lang')) { // the sign-in form in Korean too, then back to English
    await toKorean(page);
    const english = await englishWords(page);
    check(english.length === 0, `${PAGE} sign-in in Korean still shows English: ${english.join(', ')}`);
    wide = await overflow(page);
    check(wide.length === 0, `sign-in in Korean at ${WIDTH} px: ${wide.join('; ')}`);
    await page.click('#lang');
    await page.waitForFunction(() => document.documentElement.lang === 'en');
  }
  await signIn(page);
  wide = await overflow(page);
  check(wide.length === 0, `${PAGE} at ${WIDTH} px: ${wide.join('; ')}`);
  await screenshot(page, `${PAGE}-390-en`);

  if (!(await page.$('#lang'))) return; // a page in one language only
  await toKorean(page);
  if (PAGE === 'support') { // the account view is drawn again in the new language
    await page.waitForFunction(() => document.querySelectorAll('#logins tr').length > 0);
  }
  wide = await overflow(page);
  check(wide.length === 0, `${PAGE} in Korean at ${WIDTH} px: ${wide.join('; ')}`);
  const english = await englishWords(page);
  check(english.length === 0, `${PAGE} in Korean still shows English: ${english.join(', ')}`);
  await screenshot(page, `${PAGE}-390-ko`);
  void context;
});
