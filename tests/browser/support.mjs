// The support console (guard GET /support/): staff sign-in, find an account, its state, logins,
// lock history and audit trail, unlock with a required reason.
// Env: URL, ACCOUNT (locked by the python test), STAFF_TOKEN, STAFF, PLAYER_TOKEN, REASON.
import { run, env, check, screenshot } from './browser.mjs';

const ACCOUNT = env('ACCOUNT');

async function waitText(page, sel, text) {
  await page.waitForFunction(([s, t]) => {
    const e = document.querySelector(s);
    return e && !e.closest('[hidden]') && e.textContent.includes(t);
  }, [sel, text]);
}

await run(async (page) => {
  await page.goto(env('URL'));
  await page.waitForSelector('#signin:not([hidden])');
  check(await page.isHidden('#app'), 'nothing but the sign-in form without a token');

  // a player token is refused with a clear message
  await page.fill('#token', env('PLAYER_TOKEN'));
  await page.click('#signin-form button[type=submit]');
  await waitText(page, '#alert', 'This is not a staff token.');

  await page.fill('#token', env('STAFF_TOKEN'));
  await page.click('#signin-form button[type=submit]');
  await waitText(page, '#staff-name', env('STAFF'));

  // locked accounts, then a prefix search
  await page.click('#list-locked');
  await waitText(page, '#results', ACCOUNT);
  await page.fill('#query', ACCOUNT.slice(0, 4));
  await page.click('#find-form button[type=submit]');
  await waitText(page, '#find-msg', 'account(s)');
  await page.click(`#results button:has-text("${ACCOUNT}")`);

  await waitText(page, '#acct-id', ACCOUNT);
  await waitText(page, '#acct-state', 'Locked');
  await page.waitForSelector('#unlock:not([hidden])');
  await waitText(page, '#facts', 'pending');
  await page.waitForFunction(() => document.querySelectorAll('#logins tr').length > 0);
  await waitText(page, '#logins', 'Brazil (BR)');
  await waitText(page, '#logins', '198.51.100.7');
  await waitText(page, '#locks tr:first-child', 'Locked');
  await waitText(page, '#locks tr:first-child', 'Policy');
  await waitText(page, '#locks tr:first-child', 'Brazil');
  // the player's own settings change is in the audit trail, told apart from staff actions
  await waitText(page, '#audit tr:first-child', 'Policy changed');
  await waitText(page, '#audit tr:first-child', 'Player');
  await screenshot(page, 'support-locked');

  // no reason: refused, still locked
  await page.fill('#reason', '   ');
  await page.click('#unlock-form button[type=submit]');
  await waitText(page, '#unlock-msg', 'A reason is required');
  await waitText(page, '#acct-state', 'Locked');

  await page.fill('#reason', env('REASON'));
  await page.click('#unlock-form button[type=submit]');
  await waitText(page, '#acct-state', 'Not locked');
  await waitText(page, '#alert', 'Unlocked.');
  await page.waitForSelector('#unlock', { state: 'hidden' });
  await waitText(page, '#audit tr:first-child', env('REASON'));
  await waitText(page, '#audit tr:first-child', env('STAFF'));
  await waitText(page, '#locks tr:first-child', 'Unlocked');
  await waitText(page, '#locks tr:first-child', `Staff: ${env('STAFF')}`);
  await screenshot(page, 'support');
});
