// The bus dashboard (bus-dispatcher GET /): admin sign-in, the topology graph with the routes,
// a route's delivered counter moving while events are published (this script publishes through
// the publisher with node's fetch, not from the page), a dead letter of the failing route
// inspected, the endpoint fixed, the dead letters replayed and received; a route whose endpoint
// answers 503 shown with its breaker open; then the same page in Korean (the header's button),
// remembered across a reload, and back in English.
// Env: URL, ADMIN_TOKEN, PUBLISH_URL, PUBLISH_TOKEN, OK_ROUTE, BAD_ROUTE, DOWN_ROUTE, BAD_ENDPOINT,
// RUN_ID.
import { run, env, check, screenshot } from './browser.mjs';

const OK = env('OK_ROUTE');
const BAD = env('BAD_ROUTE');
const DOWN = env('DOWN_ROUTE');
const RUN = env('RUN_ID');

async function waitText(page, sel, text) {
  await page.waitForFunction(([s, t]) => {
    const e = document.querySelector(s);
    return e && !e.closest('[hidden]') && e.textContent.includes(t);
  }, [sel, text]);
}

async function publish(n, prefix) {
  const ids = [];
  for (let i = 0; i < n; i++) {
    const r = await fetch(env('PUBLISH_URL'), {
      method: 'POST',
      headers: { Authorization: `Bearer ${env('PUBLISH_TOKEN')}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ order_id: `${prefix}-${i}`, amount: i + 1 }),
    });
    check(r.status === 202, `publisher answered ${r.status}`);
    ids.push((await r.json()).id);
  }
  return ids;
}

const counter = (page, route, cls) => page.$eval(`#routes tr[data-route="${route}"] td.${cls}`,
  (e) => Number(e.textContent.replace(/,/g, '')));

await run(async (page) => {
  await page.goto(env('URL'));
  await page.waitForSelector('#signin:not([hidden])');
  check(await page.isHidden('#app'), 'nothing but the sign-in form without a token');

  // a wrong token is refused with a clear message
  await page.fill('#token', 'not-the-token');
  await page.click('#signin-form button[type=submit]');
  await waitText(page, '#alert', 'This is not the admin token.');
  check(await page.isHidden('#app'), 'a wrong token shows nothing');

  await page.fill('#token', env('ADMIN_TOKEN'));
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#app:not([hidden])');
  check(!page.url().includes(env('ADMIN_TOKEN')), 'the token is not in the URL');

  // the graph, as the flow: topic -> the three routes (each naming its endpoint's service, here
  // host:port) -> the dead-letter topic, each topic drawn once
  for (const name of [OK, BAD, DOWN, 'orders', 'orders.dlq']) {
    await page.waitForSelector(`#graph svg text:text-is("${name}")`);
  }
  check(await page.$$eval('#graph svg text', (ts) => ts.filter((t) => t.textContent === 'orders').length) === 1,
    'the topic is drawn once');
  check(await page.$$eval('#graph svg path.edge', (p) => p.length) >= 4, 'edges drawn');
  check(await page.$$eval('#graph svg path.edge.dlq', (p) => p.length) === 1, 'the dead-letter edge');
  await page.waitForSelector(`#graph g.route text.sub:text-matches("→ 127\\.0\\.0\\.1:[0-9]+")`);

  // counters move while events are published
  await page.waitForSelector(`#routes tr[data-route="${OK}"] td.delivered`);
  const before = await counter(page, OK, 'delivered');
  const ids = await publish(8, `live-${RUN}`);
  await page.waitForFunction(([route, n]) => {
    const e = document.querySelector(`#routes tr[data-route="${route}"] td.delivered`);
    return e && Number(e.textContent.replace(/,/g, '')) >= n;
  }, [OK, before + 8]);
  await page.waitForFunction((route) => {
    const e = document.querySelector(`#routes tr[data-route="${route}"] td.rate`);
    return e && Number(e.textContent) > 0;
  }, OK);
  await page.waitForFunction(([route, n]) => {
    const e = document.querySelector(`#routes tr[data-route="${route}"] td.dead`);
    return e && Number(e.textContent.replace(/,/g, '')) >= n;
  }, [BAD, 8]);
  // the route whose endpoint answers 503: breaker open, in the table and in the graph
  await waitText(page, `#routes tr[data-route="${DOWN}"]`, 'breaker open');
  await page.waitForSelector(`#graph g.route.breaker-open text:text-is("${DOWN}")`);
  // the failing route shows its last error and since when, in the graph and the table
  await page.waitForSelector(`#graph g.route.breaker-open text.error:text-matches("HTTP 503.*since [0-9]{2}:[0-9]{2}")`);
  await waitText(page, `#routes tr[data-route="${DOWN}"] .sub.error`, 'HTTP 503');
  await waitText(page, `#routes tr[data-route="${DOWN}"] .sub.error`, 'since');
  check(await page.$(`#routes tr[data-route="${OK}"] .sub.error`) === null,
    'a delivering route shows no error');
  check(await page.$(`#graph g.route.breaker-open text:text-is("${OK}")`) === null,
    'only the failing route is drawn with its breaker open');
  await screenshot(page, 'dashboard');

  // the failing route's dead letters: the event, its status and reason
  await page.click(`#routes tr[data-route="${BAD}"] button.route-name`);
  await waitText(page, '#dlq-route', BAD);
  await waitText(page, '#dlq-list', ids[0]);
  await waitText(page, `#dlq-list tr[data-id="${ids[0]}"]`, '400');
  await waitText(page, `#dlq-list tr[data-id="${ids[0]}"]`, 'order refused by the test');
  await page.click(`#dlq-list tr[data-id="${ids[0]}"] button`);
  await waitText(page, '#detail-value', `live-${RUN}-0`);
  await waitText(page, '#detail-headers', 'x-bus-status');
  await screenshot(page, 'dashboard-dead-letters');

  // fix the endpoint, replay, and the endpoint receives the events
  const fix = await fetch(`${env('BAD_ENDPOINT')}/control/accept`, { method: 'POST' });
  check(fix.status === 200, 'endpoint switched to accept');
  await page.click('#replay');
  await waitText(page, '#dlq-msg', 'Replayed');
  const msg = await page.textContent('#dlq-msg');
  check(/Replayed \d+ dead letters? to orders/.test(msg), `replay message: ${msg}`);
  const deadline = Date.now() + Number(process.env.BROWSER_TIMEOUT_MS || 15000) * 2;
  for (;;) {
    const got = await (await fetch(`${env('BAD_ENDPOINT')}/received`)).json();
    if (ids.every((id) => got.accepted.includes(id))) break;
    check(Date.now() < deadline, `replayed events received (got ${got.accepted.length})`);
    await new Promise((r) => setTimeout(r, 200));
  }
  // a second replay has nothing left to send
  await page.click('#replay');
  await waitText(page, '#dlq-msg', 'Nothing to replay');

  // in Korean: the header's button switches every text the page shows, including what is
  // already drawn (the message, the states, the failing route's error and since when); the
  // choice is remembered across a reload
  check(await page.evaluate(() => document.documentElement.lang) === 'en', 'English first');
  await page.click('#lang');
  await page.waitForFunction(() => document.documentElement.lang === 'ko');
  await waitText(page, '#dlq-msg', '다시 보낼 것이 없습니다');
  await waitText(page, 'h1', '버스 대시보드');
  await waitText(page, `#routes tr[data-route="${DOWN}"]`, '차단기 열림');
  await waitText(page, `#routes tr[data-route="${OK}"]`, '정상');
  await waitText(page, `#routes tr[data-route="${DOWN}"] .sub.error`, '부터');
  await page.waitForSelector(`#graph g.route.breaker-open text.error:text-matches("HTTP 503.*[0-9]{2}:[0-9]{2}부터")`);
  await page.waitForSelector('#graph svg text.col-head:text-is("토픽")');
  await page.waitForSelector('#graph svg text.sub:text-matches("파티션 2개")');
  await waitText(page, '#updated', '갱신');
  await waitText(page, '#dlq', '토픽의 레코드');
  await page.click(`#routes tr[data-route="${OK}"] button.route-name`);
  await waitText(page, '#dlq-msg', '배달 못 한 메시지 토픽이 없습니다');
  await screenshot(page, 'dashboard-ko');
  await page.reload();
  await page.waitForSelector('#app:not([hidden])');
  check(await page.evaluate(() => document.documentElement.lang) === 'ko', 'Korean remembered');
  await waitText(page, '#routes-title', '라우트');
  await waitText(page, `#routes tr[data-route="${DOWN}"]`, '차단기 열림');
  // a wrong token, in Korean
  await page.click('#signout');
  await page.fill('#token', 'not-the-token');
  await page.click('#signin-form button[type=submit]');
  await waitText(page, '#alert', '관리자 토큰이 아닙니다.');
  // back to English
  await page.click('#lang');
  await page.waitForFunction(() => document.documentElement.lang === 'en');
  await waitText(page, '#alert', 'This is not the admin token.');
  await waitText(page, '#signin-title', 'Admin sign-in');
});
