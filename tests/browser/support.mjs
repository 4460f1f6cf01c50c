// The support console (guard GET /support/): staff sign-in, find an account, its state, logins
// (with the reasons, and a lifted lock said so), lock history and audit trail, unlock with a
// required reason, then lock now and reset the policy with a ticket reference; the account list
// shows the state, not the policy, in red.
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
  await waitText(page, '#logins tr:first-child', 'Account locked');
  await waitText(page, '#logins tr:first-child .reasons', 'abroad');
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
  // the list shows the account's state: no red badge once it is unlocked (its policy is "lock")
  await waitText(page, '#results', 'Not locked');
  check(await page.locator(`#results button:has-text("${ACCOUNT}") .badge.locked`).count() === 0,
    'no red lock badge in the list after the unlock');
  // the lock's login says it was lifted once history has the unlock (through the bus)
  const deadline = Date.now() + 15000;
  for (;;) {
    await page.click(`#results button:has-text("${ACCOUNT}")`);
    await waitText(page, '#acct-id', ACCOUNT);
    const row = await page.textContent('#logins tr:first-child');
    if (row.includes('Locked, unlocked')) break;
    check(Date.now() < deadline, `the lock's login still says locked: ${row}`);
    await page.waitForTimeout(300);
  }
  await screenshot(page, 'support');

  // lock now: a bad ticket reference is refused, then locked with a ticket
  await page.selectOption('#action-what', 'lock');
  await page.fill('#action-reason', 'player reports a stolen phone');
  await page.fill('#action-ticket', 'bad ticket!');
  await page.click('#action-form button[type=submit]');
  await waitText(page, '#action-msg', 'A ticket reference is');
  await page.fill('#action-ticket', env('TICKET'));
  await page.click('#action-form button[type=submit]');
  await waitText(page, '#action-msg', 'Locked. Only support can unlock it.');
  await waitText(page, '#acct-state', 'Locked');
  await page.waitForSelector('#unlock:not([hidden])');
  await waitText(page, '#audit tr:first-child', 'Locked by support');
  await waitText(page, '#audit tr:first-child', env('TICKET'));
  await waitText(page, '#locks tr:first-child', `Staff: ${env('STAFF')}`);
  await waitText(page, '#results', 'Locked');

  // reset the policy to the default
  await page.selectOption('#action-what', 'policy');
  await page.fill('#action-reason', 'player asked to start over');
  await page.fill('#action-ticket', env('TICKET'));
  await page.click('#action-form button[type=submit]');
  await waitText(page, '#action-msg', 'Policy reset');
  await waitText(page, '#audit tr:first-child', 'Policy reset');
  await waitText(page, '#facts', 'none');
  await waitText(page, '#results', 'policy: none');
  await screenshot(page, 'support-actions');
});
