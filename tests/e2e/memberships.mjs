// Memberships that live in the app: headless Chromium (Debian's, driven by
// playwright-core) on examples/memberships — an Express app with an opaque
// cookie session — whose page joins channels with pusher-js through the app's
// same-origin /pusher/auth, channelgate and Sockudo. channelgate asks the
// app's /api/me who the cookie is, reads room memberships from PostgreSQL and
// team memberships from Redis, and lets the app decide documents (a hook).
// Memberships change in the database and Redis while the test runs; the
// example's TTLs are 2 s here, so a change shows within seconds.
// Started by run.sh with: MEMBERS_URL, CHROMIUM, PSQL, PG_PORT, REDIS_PORT.
// Prints PASS/FAIL per case; the last line is `N passed, M failed`.
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { Failure, check, run, show, test } from './lib/harness.mjs';

const URL = process.env.MEMBERS_URL;
if (!URL || !process.env.PSQL || !process.env.PG_PORT || !process.env.REDIS_PORT) {
  console.log('FAIL setup: MEMBERS_URL, PSQL, PG_PORT and REDIS_PORT must be set (run tests/e2e/run.sh)');
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const WAIT = { timeout: 8000 };
const state = { browser: null, pages: {} };

/** Runs SQL on the app's database, as its owner would (the app's role). */
function sql(statement) {
  execFileSync(process.env.PSQL, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', process.env.PG_PORT,
    '-U', 'app', '-d', 'app', '-c', statement], { stdio: ['ignore', 'ignore', 'pipe'] });
}

function redis(...args) {
  execFileSync('redis-cli', ['-p', process.env.REDIS_PORT, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A browser context of its own (its own cookie jar), signed in as `user`. */
async function signIn(user) {
  const context = await state.browser.newContext();
  const page = await context.newPage();
  await page.goto(URL, WAIT);
  await page.selectOption('select[name=user]', user);
  await page.click('#login button');
  await page.waitForFunction((u) => document.getElementById('who').dataset.user === u, user, WAIT);
  state.pages[user] = { context, page };
  return page;
}

/** Clicks the channel's button and waits for the outcome the page logs: {outcome, text}. */
async function subscribe(page, channel) {
  const selector = `#log li[data-channel="${channel}"]`;
  const before = await page.$$eval(selector, (l) => l.length);
  await page.click(`button[data-channel="${channel}"]`);
  await page.waitForFunction(([s, n]) => document.querySelectorAll(s).length > n, [selector, before], WAIT);
  return page.$eval(selector, (li) => ({ outcome: li.dataset.outcome, text: li.textContent }));
}

/** Subscribes again and again until the outcome is `want` (bounded: the 2 s TTL plus margin). */
async function eventually(page, channel, want, ms = 10000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await subscribe(page, channel);
    if (last.outcome === want) return last;
    await page.waitForTimeout(250); // pacing between attempts, not synchronisation
  }
  throw new Failure(`${channel}: still ${show(last)} after ${ms} ms, expected ${want}`);
}

test('setup: headless Chromium starts', async () => {
  state.browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    timeout: 30000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}, { timeoutMs: 40000, precondition: true });

test('memberships: without a session the app\'s /pusher/auth (channelgate) answers 401', async (t) => {
  const context = await state.browser.newContext();
  t.cleanup(() => context.close());
  const page = await context.newPage();
  await page.goto(URL, WAIT);
  const answer = await page.evaluate(async () => {
    const res = await fetch('/pusher/auth', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'socket_id=1.1&channel_name=presence-room-42',
    });
    return { status: res.status, body: await res.json().catch(() => null) };
  });
  check(answer.status === 401 && answer.body && answer.body.reason === 'token_missing', `got ${show(answer)}`);
});

test('memberships: Alice (a moderator in PostgreSQL) joins presence-room-42 with her role', async () => {
  const page = await signIn('alice');
  const got = await subscribe(page, 'presence-room-42');
  check(got.outcome === 'joined', `got ${show(got)}`);
  const info = JSON.parse(got.text.slice(got.text.indexOf('alice ') + 'alice '.length));
  check(info.name === 'Alice' && info.role === 'moderator', `members: ${got.text}`);
}, { timeoutMs: 20000 });

test('memberships: Mallory (banned in PostgreSQL) is refused with 403', async () => {
  const page = await signIn('mallory');
  const got = await subscribe(page, 'presence-room-42');
  check(got.outcome === 'refused' && got.text.includes('403'), `got ${show(got)}`);
});

test('memberships: a ban lifted in the database lets Mallory in once the TTL has passed', async () => {
  const page = await signIn('bob');
  const got0 = await subscribe(page, 'presence-room-42');
  check(got0.outcome === 'joined', `bob, a member of room 42: ${show(got0)}`);
  let got;
  sql("INSERT INTO room_members (room_id, user_id) VALUES (42, 'mallory') ON CONFLICT (room_id, user_id) DO UPDATE SET role = 'member'");
  got = await eventually(state.pages.mallory.page, 'presence-room-42', 'joined');
  check(got.text.includes('"role":"member"'), `mallory's role after the update: ${got.text}`);
}, { timeoutMs: 30000 });

test('memberships: a membership removed in the database is refused after the TTL', async () => {
  const { page } = state.pages.alice;
  let got = await subscribe(page, 'presence-room-42');
  check(got.outcome === 'joined', `before leaving: ${show(got)}`);
  const left = await page.evaluate(async () => (await fetch('/rooms/42/leave', { method: 'POST' })).status);
  check(left === 204, `POST /rooms/42/leave answered ${left}`);
  // Within the 2 s TTL the cached membership still answers; after it, the database's.
  got = await subscribe(page, 'presence-room-42');
  check(got.outcome === 'joined', `right after leaving (cached): ${show(got)}`);
  got = await eventually(page, 'presence-room-42', 'refused');
  check(got.text.includes('403'), `got ${show(got)}`);
}, { timeoutMs: 30000 });

test('memberships: team members come from Redis (SISMEMBER), and a change shows after the TTL', async () => {
  let got = await subscribe(state.pages.alice.page, 'private-team-blue');
  check(got.outcome === 'joined', `alice: ${show(got)}`);
  got = await subscribe(state.pages.bob.page, 'private-team-blue');
  check(got.outcome === 'refused', `bob before: ${show(got)}`);
  redis('SADD', 'team:blue:members', 'bob');
  await eventually(state.pages.bob.page, 'private-team-blue', 'joined');
}, { timeoutMs: 30000 });

test('memberships: the app decides documents through the hook', async () => {
  let got = await subscribe(state.pages.alice.page, 'private-doc-7');
  check(got.outcome === 'joined', `alice: ${show(got)}`);
  got = await subscribe(state.pages.bob.page, 'private-doc-7');
  check(got.outcome === 'refused' && got.text.includes('403'), `bob before: ${show(got)}`);
  sql("INSERT INTO doc_viewers VALUES (7, 'bob') ON CONFLICT DO NOTHING");
  await eventually(state.pages.bob.page, 'private-doc-7', 'joined');
}, { timeoutMs: 30000 });

test('cleanup: close the browser', async () => {
  for (const { context } of Object.values(state.pages)) await context.close();
  await state.browser.close();
});

process.exit(await run());
