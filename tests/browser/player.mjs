// The player page (history GET /): sign-in, history with country names and masked IPs, paging,
// language toggle, settings saved to guard, and unlock with the code. Run twice by
// tests/integration/test_pages.py: PHASE=settings (before the lock) and PHASE=unlock (after it).
// Env: URL, ACCOUNT, TOKEN, OTHER_TOKEN, PHASE, and for unlock CODE, WRONG_CODE.
import { run, env, check, screenshot } from './browser.mjs';

const URL = env('URL');
const ACCOUNT = env('ACCOUNT');
const PHASE = env('PHASE');

async function waitText(page, sel, text) {
  await page.waitForFunction(([s, t]) => {
    const e = document.querySelector(s);
    return e && !e.closest('[hidden]') && e.textContent.includes(t);
  }, [sel, text]);
}

async function cells(page, row) {
  return page.$$eval(`#rows tr:nth-child(${row}) td`, (tds) => tds.map((td) => td.textContent.trim()));
}

async function signIn(page, token, account = '') {
  await page.waitForSelector('#signin:not([hidden])');
  await page.fill('#token', token);
  await page.fill('#account', account);
  await page.click('#signin-form button[type=submit]');
}

await run(async (page) => {
  await page.goto(URL);
  // no token: the sign-in form, nothing else
  await page.waitForSelector('#signin:not([hidden])');
  check(await page.isHidden('#app'), 'the account view is hidden before sign-in');

  if (PHASE === 'settings') {
    // a staff token is not a player token
    await signIn(page, env('STAFF_TOKEN'));
    await waitText(page, '#alert', 'does not look like a player token');
    // another account's token: a clear error, back to the form
    await signIn(page, env('OTHER_TOKEN'), ACCOUNT);
    await waitText(page, '#alert', `another account than ${ACCOUNT}`);
    await page.waitForSelector('#signin:not([hidden])');

    await signIn(page, env('TOKEN'));
    await waitText(page, '#who', ACCOUNT);
    check(!page.url().includes(env('TOKEN').slice(0, 20)), 'the token is not in the URL');
    await page.waitForFunction(() => document.querySelectorAll('#rows tr').length === 10);
    const first = await cells(page, 1);
    check(first[1] === 'Germany (DE)', `first row country: ${first[1]}`);
    check(first[2] === '11.2.3.*', `first row IP masked: ${first[2]}`);
    check(first[3] === 'eu-1', `first row server: ${first[3]}`);
    // what guard did and why (an action from before reasons: "from abroad")
    check(first[4] === 'Notifiedfrom abroad', `first row action: ${first[4]}`);
    await waitText(page, '#rows tr:first-child .reasons', 'from abroad');
    const second = await cells(page, 2);
    check(second[1] === 'Japan (JP)' && second[4] === '—', `second row: ${second}`);
    const allText = await page.textContent('#rows');
    check(!allText.includes('11.2.3.4'), 'no full IPv4 address on the page');
    check(await page.isDisabled('#newer'), 'no newer page on the first page');

    await page.click('#older');
    await waitText(page, '#page-no', 'Page 2');
    const n2 = await page.$$eval('#rows tr', (r) => r.length);
    check(n2 === Number(env('PAGE2_ROWS')), `page 2 rows: ${n2}`);
    const page2 = await page.textContent('#rows');
    check(page2.includes('Unknown'), 'an unknown country is shown as such');
    check(page2.includes('2001:db8:85a3:*:*:*:*:*'), 'IPv6 masked to its first 48 bits');
    check(!page2.includes('7334'), 'no full IPv6 address');
    check(await page.isDisabled('#older'), 'page 2 is the last');
    await page.click('#newer');
    await waitText(page, '#page-no', 'Page 1');

    // Korean, remembered across a reload; the token stays for the tab
    await page.click('#lang');
    await waitText(page, 'h1', '계정 보안');
    check((await cells(page, 1))[1] === '독일 (DE)', 'country names follow the language');
    await screenshot(page, 'player-ko');
    await page.reload();
    await waitText(page, 'h1', '계정 보안');
    await waitText(page, '#who', ACCOUNT);
    await page.click('#lang');
    await waitText(page, 'h1', 'Account security');

    // settings: lock, email + in game, Japan until a date, contacts
    await page.waitForSelector('#policy-lock');
    await page.check('#policy-lock');
    await page.check('input[name=channel][value=email]');
    await page.click('#add-country');
    await page.fill('#allowed tr:last-child input.cc', 'jp');
    await waitText(page, '#allowed tr:last-child td.cname', 'Japan');
    await page.fill('#allowed tr:last-child input[type=date]', '2030-01-31');
    await page.fill('#email', 'player@example.com');
    await page.click('#save');
    await waitText(page, '#settings-msg', 'Saved.');
    check(await page.isChecked('#policy-lock'), 'the saved policy is shown');
    // the new email takes effect only with the code sent to it (CODE_URL: what reached it)
    await page.waitForSelector('#confirm-form:not([hidden])');
    await waitText(page, '#confirm-to', 'player@example.com');
    const { code } = await (await fetch(env('CODE_URL'))).json();
    await page.fill('#confirm-code', code === '00000000' ? '11111111' : '00000000');
    await page.click('#confirm-form button[type=submit]');
    await waitText(page, '#confirm-msg', 'Wrong code.');
    await page.fill('#confirm-code', code);
    await page.click('#confirm-form button[type=submit]');
    await waitText(page, '#settings-msg', 'Confirmed');
    await page.waitForSelector('#confirm-form', { state: 'hidden' });
    check(await page.inputValue('#email') === 'player@example.com', 'the confirmed email is shown');
    await screenshot(page, 'player-settings');
  } else if (PHASE === 'unlock') {
    await signIn(page, env('TOKEN'));
    await waitText(page, '#who', ACCOUNT);
    await page.waitForSelector('#locked:not([hidden])');
    await waitText(page, '#state-badge', 'Locked');
    await waitText(page, '#rows tr:first-child', 'Account locked');
    await waitText(page, '#events li:first-child', 'Account locked');
    await waitText(page, '#events li:first-child', 'by your protection setting');
    await waitText(page, '#events', 'Settings changed: protection');
    await screenshot(page, 'player');
    await page.fill('#code', env('WRONG_CODE'));
    await page.click('#unlock-form button[type=submit]');
    await waitText(page, '#unlock-msg', 'Wrong code.');
    await waitText(page, '#unlock-msg', 'tries left');
    check(await page.isVisible('#locked'), 'still locked after a wrong code');
    await page.fill('#code', env('CODE'));
    await page.click('#unlock-form button[type=submit]');
    await waitText(page, '#alert', 'Your account is unlocked.');
    await page.waitForSelector('#locked', { state: 'hidden' });
    await waitText(page, '#state-badge', 'Not locked');
    // the unlock reaches the timeline (guard → account.event → history), and the lock's login
    // no longer says "Account locked"
    await waitText(page, '#events li:first-child', 'Account unlocked');
    await waitText(page, '#events li:first-child', 'by you');
    await waitText(page, '#rows tr:first-child', 'Locked, unlocked');
    // in Korean too
    await page.click('#lang');
    await waitText(page, '#events li:first-child', '계정 잠금 해제');
    await waitText(page, '#rows tr:first-child', '에 해제');
    await page.click('#lang');
    await page.click('#signout');
    await page.waitForSelector('#signin:not([hidden])');
    check(await page.evaluate(() => sessionStorage.length === 0), 'sign-out forgets the token');
  } else {
    throw new Error(`unknown PHASE ${PHASE}`);
  }
});
