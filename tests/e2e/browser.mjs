// Browser test: headless Chromium (Debian's, driven by playwright-core) loads
// the demo app (examples/demo), logs two users in, and both join
// presence-room-lobby through the demo's same-origin proxy, channelgate
// (cookie session) and Sockudo. Started by run.sh with:
//   DEMO_URL, CHROMIUM, ARTIFACTS, DEMO_SOCKUDO_PORT, DEMO_PUSHER_APP_SECRET
// Prints PASS/FAIL per case; the last line is `N passed, M failed`.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import PusherServer from 'pusher';
import { chromium } from 'playwright-core';
import { Failure, check, run, same, show, test } from './lib/harness.mjs';

const DEMO_URL = process.env.DEMO_URL;
const ARTIFACTS = process.env.ARTIFACTS;
if (!DEMO_URL || !ARTIFACTS || !process.env.DEMO_SOCKUDO_PORT || !process.env.DEMO_PUSHER_APP_SECRET) {
  console.log('FAIL setup: DEMO_URL, ARTIFACTS, DEMO_SOCKUDO_PORT and DEMO_PUSHER_APP_SECRET must be set (run tests/e2e/run.sh)');
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const screenshot = join(ARTIFACTS, 'demo-presence.png');
mkdirSync(ARTIFACTS, { recursive: true });

const state = { browser: null, pages: {} };
const WAIT = { timeout: 8000 };

/** The member list as the page renders it: [{id, name, me}]. */
const membersOn = (page) =>
  page.$$eval('#members li', (lis) =>
    lis.map((li) => ({ id: li.dataset.userId, name: li.textContent, me: li.classList.contains('me') })),
  );

/** Waits until the page lists exactly `ids` (in any order). */
async function waitForMembers(page, ids) {
  try {
    await page.waitForFunction(
      (want) => {
        const got = [...document.querySelectorAll('#members li')].map((li) => li.dataset.userId).sort();
        return JSON.stringify(got) === JSON.stringify([...want].sort());
      },
      ids,
      WAIT,
    );
  } catch {
    const status = await page.textContent('.status').catch(() => '?');
    throw new Failure(`the page lists ${show(await membersOn(page))}, expected ${show(ids)}; status: ${status.replace(/\s+/g, ' ').trim()}`);
  }
}

/** A new browser context (its own cookie jar) with the demo page open. */
async function openDemo(who) {
  const context = await state.browser.newContext({ viewport: { width: 1000, height: 640 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  await page.goto(DEMO_URL, WAIT);
  state.pages[who] = { context, page, problems };
  return page;
}

async function logIn(page, name) {
  await page.waitForSelector('#login-form', { state: 'visible', ...WAIT });
  await page.fill('#name', name);
  await page.click('#login-form button');
  await page.waitForSelector('#room', { state: 'visible', ...WAIT });
}

test('setup: Sockudo serves app "demo" (signed REST GET /channels)', async () => {
  const sdk = new PusherServer({
    appId: 'demo',
    key: 'demo-key',
    secret: process.env.DEMO_PUSHER_APP_SECRET,
    host: '127.0.0.1',
    port: process.env.DEMO_SOCKUDO_PORT,
    useTLS: false,
    timeout: 5000,
  });
  const res = await sdk.get({ path: '/channels' }).catch((e) => {
    throw new Failure(`GET /apps/demo/channels: ${e.message}${e.status ? ` (status ${e.status}, body ${show(e.body)})` : ''}`);
  });
  check(res.status === 200, `GET /apps/demo/channels answered ${res.status}`);
}, { precondition: true });

test('setup: headless Chromium starts', async () => {
  state.browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    timeout: 30000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}, { timeoutMs: 40000, precondition: true });

test('demo: the page loads, offers a login form, and shows no member before login', async () => {
  const page = await openDemo('alice');
  await page.waitForSelector('#login-form', { state: 'visible', ...WAIT });
  check((await membersOn(page)).length === 0, 'members listed before login');
});

test('demo: without a session cookie, /pusher/auth through the demo proxy answers 401', async (t) => {
  // A context of its own: the browser logs the 401 as a console error, which
  // the last case would otherwise count.
  const context = await state.browser.newContext();
  t.cleanup(() => context.close());
  const page = await context.newPage();
  await page.goto(DEMO_URL, WAIT);
  const answer = await page.evaluate(async () => {
    const res = await fetch('/pusher/auth', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'socket_id=1.1&channel_name=presence-room-lobby',
    });
    return { status: res.status, body: await res.json().catch(() => null) };
  });
  check(answer.status === 401 && answer.body && answer.body.reason === 'token_missing', `got ${show(answer)}`);
});

test('demo: Alice logs in and joins presence-room-lobby through channelgate and Sockudo', async () => {
  const { page } = state.pages.alice;
  await logIn(page, 'Alice');
  await page.waitForFunction(() => document.querySelector('#subscription').textContent.startsWith('joined'), null, WAIT);
  await waitForMembers(page, ['alice']);
  const members = await membersOn(page);
  check(same(members, [{ id: 'alice', name: 'Alice', me: true }]), `members ${show(members)}`);
  await page.waitForFunction(() => document.querySelector('#signin').textContent === 'signed in as alice', null, WAIT);
});

test('demo: Bob logs in from another browser; both pages list Alice and Bob', async () => {
  const page = await openDemo('bob');
  await logIn(page, 'Bob');
  await waitForMembers(page, ['alice', 'bob']);
  await waitForMembers(state.pages.alice.page, ['alice', 'bob']);
  const atAlice = await membersOn(state.pages.alice.page);
  const byId = Object.fromEntries(atAlice.map((m) => [m.id, m]));
  check(byId.bob && byId.bob.name === 'Bob' && !byId.bob.me, `Alice's page shows ${show(atAlice)}`);
  check(byId.alice && byId.alice.me, `Alice's page shows ${show(atAlice)}`);
  const count = await state.pages.alice.page.textContent('#member-count');
  check(count === '2', `member count ${count}`);
});

test('demo: a chat message (client event) from Bob appears on Alice\'s page', async (t) => {
  const bob = state.pages.bob.page;
  await bob.fill('#message', 'Hello Alice, this came through Sockudo');
  await bob.click('#message-form button');
  const alice = state.pages.alice.page;
  await alice.waitForFunction(
    () => [...document.querySelectorAll('#messages li')].some((li) => li.textContent === 'Bob: Hello Alice, this came through Sockudo'),
    null,
    WAIT,
  );
  await alice.screenshot({ path: screenshot, fullPage: true });
  t.note(`screenshot ${screenshot}`);
});

test('demo: Bob closes his page and Alice\'s list drops him (member_removed)', async () => {
  await state.pages.bob.context.close();
  await waitForMembers(state.pages.alice.page, ['alice']);
});

test('demo: no JavaScript errors on the pages', async () => {
  const problems = Object.entries(state.pages).flatMap(([who, p]) => p.problems.map((x) => `${who}: ${x}`));
  check(problems.length === 0, problems.join('; '));
});

let status = 1;
try {
  status = await run();
} finally {
  if (state.browser) await state.browser.close().catch(() => {});
}
process.exit(status);
