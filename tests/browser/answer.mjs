// The player page's "was it you?" screen (history GET /#answer=<token>, the link of an alert):
// no sign-in needed, the alert in the player's language, "not me" secures the account, "it was
// me" allows the country for the chosen days, a used link says so. At 390 px, no horizontal
// scroll. Run by tests/integration/test_pages.py.
// Env: NOT_ME_URL (a Korean player's alert), ME_URL (an English player's alert).
import { run, env, check, screenshot } from './browser.mjs';

async function waitText(page, sel, text) {
  await page.waitForFunction(([s, t]) => {
    const e = document.querySelector(s);
    return e && !e.closest('[hidden]') && e.textContent.includes(t);
  }, [sel, text]);
}

async function noHorizontalScroll(page, what) {
  const w = await page.evaluate(() => document.documentElement.scrollWidth);
  check(w <= 390, `${what}: the page is ${w} px wide at 390 px`);
}

await run(async (page) => {
  await page.setViewportSize({ width: 390, height: 844 });
  // a Korean player's alert: Korean throughout, the login described, nothing signed in
  await page.goto(env('NOT_ME_URL'));
  await page.waitForSelector('#answer:not([hidden])');
  check(await page.isHidden('#signin'), 'no sign-in form on the answer screen');
  await waitText(page, '#answer-title', '본인이 맞나요?');
  await waitText(page, '#answer-login', '미국');
  await waitText(page, '#answer-login', '(UTC+09:00)');
  await noHorizontalScroll(page, 'answer screen (ko)');
  await screenshot(page, 'answer-ko');
  check(await page.isChecked('input[name=secure][value=lock]'), 'locking is the default');
  await page.click('#answer-not-me-btn');
  await waitText(page, '#answer-msg', '계정을 잠그고 모든 접속을 끊었습니다');
  check(await page.isHidden('#answer-forms'), 'the choices are gone once answered');
  // the link works once
  await page.reload();
  await waitText(page, '#answer-msg', '이미 답한 알림입니다');

  // an English player's alert: allow the country for 7 days
  await page.goto('about:blank');
  await page.goto(env('ME_URL'));
  await waitText(page, '#answer-title', 'Was it you?');
  await waitText(page, '#answer-login', 'Japan');
  await waitText(page, '#allow-label', 'Japan');
  await page.selectOption('#allow-days', '7');
  await noHorizontalScroll(page, 'answer screen (en)');
  await page.click('#answer-me-btn');
  await waitText(page, '#answer-msg', 'are allowed for 7 days');
});
