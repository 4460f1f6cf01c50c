// Smoke test of the browser set-up itself: load a page from $URL and read its title.
import { run, env, check } from './browser.mjs';
await run(async (page) => {
  await page.goto(env('URL'));
  check((await page.title()).length > 0, 'page has a title');
});
