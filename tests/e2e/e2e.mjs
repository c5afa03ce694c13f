// End-to-end suite: pusher-js clients (Node build) authorized by channelgate,
// connected to a real Sockudo, with events published by the official `pusher`
// server SDK. Started by run.sh, which passes the ports and the per-run secrets:
//   SOCKUDO_PORT, CHANNELGATE_URL, PUSHER_APP_SECRET,
//   PUSHER_ENCRYPTION_MASTER_KEY_BASE64, SESSION_JWT_SECRET
// Prints PASS/FAIL per case; the last line is `N passed, M failed`.
import { randomBytes } from 'node:crypto';
import Echo from 'laravel-echo';
import PusherServer from 'pusher';
import Pusher from 'pusher-js';
import { channelgateEchoOptions } from '../../examples/laravel-echo/echo-options.js';
import { Client, describe, nextEvent, settings } from './lib/clients.mjs';
import { Failure, check, run, same, show, sleep, test, within } from './lib/harness.mjs';
import { mintToken } from './lib/jwt.mjs';

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.log(`FAIL setup: environment variable ${name} is not set (run tests/e2e/run.sh)`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  return v;
};

// Must match channelgate.yaml, sockudo.toml and policies/e2e.yaml.
const APP_ID = 'e2e';
const APP_KEY = 'e2e-key';
const ISSUER = 'channelgate-e2e';
const AUDIENCE = 'e2e';

const SOCKUDO_PORT = env('SOCKUDO_PORT');
const GATEWAY = env('CHANNELGATE_URL');
const JWT_SECRET = env('SESSION_JWT_SECRET');
const s = settings({ appKey: APP_KEY, sockudoPort: SOCKUDO_PORT, gatewayUrl: GATEWAY });

// The official server SDK, as the app's backend would use it: it holds the
// secret and the master key and talks to Sockudo's REST API.
const server = new PusherServer({
  appId: APP_ID,
  key: APP_KEY,
  secret: env('PUSHER_APP_SECRET'),
  host: '127.0.0.1',
  port: SOCKUDO_PORT,
  useTLS: false,
  encryptionMasterKeyBase64: env('PUSHER_ENCRYPTION_MASTER_KEY_BASE64'),
  timeout: 5000,
});

const users = {
  alice: { sub: 'alice', name: 'Alice', role: 'admin', email: 'alice@example.com', rooms: ['42', '43', '44'], team: 'acme' },
  bob: { sub: 'bob', name: 'Bob', role: 'member', email: 'bob@example.com', rooms: ['42', '43', '44'], team: 'globex' },
  carol: { sub: 'carol', name: 'Carol', role: 'member', email: 'carol@example.com', rooms: ['7'], team: 'acme' },
};
const token = (user, opts = {}) =>
  mintToken(opts.secret ?? JWT_SECRET, { iss: ISSUER, aud: AUDIENCE, ...users[user] }, opts);

/** Awaits a server SDK call; its RequestError becomes a failure with Sockudo's status and body. */
async function sdk(what, promise) {
  let res;
  try {
    res = await promise;
  } catch (e) {
    throw new Failure(`${what}: ${e.message}${e.status ? ` (status ${e.status}, body ${show(e.body)})` : ''}`);
  }
  check(res.status === 200, `${what} answered ${res.status}`);
  return res;
}

const trigger = (channel, event, data) =>
  sdk(`server SDK trigger on ${channel}`, server.trigger(channel, event, data));

/** POSTs straight to channelgate, for the `reason` pusher-js does not expose. */
async function gatewayReason(path, form, bearer) {
  const headers = { 'Content-Type': 'application/x-www-form-urlencoded' };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const res = await fetch(`${GATEWAY}${path}`, { method: 'POST', headers, body: new URLSearchParams(form) });
  const body = await res.json().catch(() => ({}));
  return { status: res.status, reason: body.reason };
}

// ---------------------------------------------------------------- preconditions

test('setup: channelgate is ready (GET /readyz)', async () => {
  const res = await fetch(`${GATEWAY}/readyz`);
  check(res.status === 200, `GET /readyz answered ${res.status}`);
}, { precondition: true });

test('setup: Sockudo serves app "e2e" (signed REST GET /channels through the server SDK)', async () => {
  // Sockudo falls back to defaults (no app) on a config error: a 404 here means the TOML was not applied.
  await sdk(`GET /apps/${APP_ID}/channels`, server.get({ path: '/channels' }));
}, { precondition: true });

// ---------------------------------------------------------------- private channels

test('private: alice joins her own channel and receives an event triggered by the server SDK', async (t) => {
  const alice = new Client(t, s, { token: token('alice') });
  const channel = await alice.join('private-user-alice');
  const got = nextEvent(channel, 'notify', 5000, 'the notify event');
  await trigger('private-user-alice', 'notify', { text: 'hello alice' });
  const data = await got;
  check(same(data, { text: 'hello alice' }), `received ${show(data)}`);
});

test("private: alice is refused bob's channel with 403, and bob's event never reaches her", async (t) => {
  const alice = new Client(t, s, { token: token('alice') });
  const bob = new Client(t, s, { token: token('bob') });
  const r = await alice.subscribe('private-user-bob');
  check(!r.ok && r.status === 403, `expected pusher:subscription_error status 403, got ${describe(r)}`);
  const bobChannel = await bob.join('private-user-bob');
  const bobGot = nextEvent(bobChannel, 'notify', 5000, 'the event at bob');
  await trigger('private-user-bob', 'notify', { text: 'for bob only' });
  await bobGot; // delivered to the member, so its absence at alice means something
  await sleep(500);
  const leaked = alice.frames.filter((f) => f.channel === 'private-user-bob' && f.event === 'notify');
  check(leaked.length === 0, `alice received ${show(leaked)}`);
  const direct = await gatewayReason('/pusher/auth', { socket_id: '1.1', channel_name: 'private-user-bob' }, token('alice'));
  check(direct.status === 403 && direct.reason === 'rule_denied', `channelgate answered ${show(direct)}`);
});

const unauthorized = [
  ['no token', () => undefined, 'token_missing'],
  ['an expired token', () => token('alice', { ttlSeconds: -120 }), 'token_expired'],
  ['a token signed with another secret', () => token('alice', { secret: randomBytes(32).toString('base64') }), 'invalid_signature'],
];
for (const [what, make, reason] of unauthorized) {
  test(`private: ${what} gets pusher:subscription_error status 401 (${reason})`, async (t) => {
    const bearer = make();
    const client = new Client(t, s, { token: bearer });
    const r = await client.subscribe('private-user-alice');
    check(!r.ok && r.status === 401, `expected status 401, got ${describe(r)}`);
    const direct = await gatewayReason('/pusher/auth', { socket_id: '1.1', channel_name: 'private-user-alice' }, bearer);
    check(direct.status === 401 && direct.reason === reason, `channelgate answered ${show(direct)}, expected 401 ${reason}`);
  });
}

test('private: the token can travel in `params` (form field) instead of a header', async (t) => {
  const alice = new Client(t, s, { token: token('alice'), tokenIn: 'params' });
  await alice.join('private-user-alice');
});

// ---------------------------------------------------------------- presence

const presenceInfo = (user) => ({ name: users[user].name, role: users[user].role });
// Each case uses a room of its own: presence is per user id, so a member still
// leaving from an earlier case would hide the next case's member_added.

test('presence: alice and bob see each other with exactly the user_info the policy gives', async (t) => {
  const alice = new Client(t, s, { token: token('alice') });
  const bob = new Client(t, s, { token: token('bob') });
  const ac = await alice.join('presence-room-42');
  check(ac.members.me && ac.members.me.id === 'alice', `alice's me is ${show(ac.members.me)}`);
  check(same(ac.members.me.info, presenceInfo('alice')), `alice's own info is ${show(ac.members.me.info)}`);
  const added = nextEvent(ac, 'pusher:member_added', 5000, 'member_added at alice');
  const bc = await bob.join('presence-room-42');
  const member = await added;
  check(member.id === 'bob' && same(member.info, presenceInfo('bob')), `alice saw member_added ${show(member)}`);
  const seenByBob = bc.members.get('alice');
  check(seenByBob && same(seenByBob.info, presenceInfo('alice')), `bob sees alice as ${show(seenByBob)} (no email, only name and role)`);
  check(bc.members.count === 2, `bob counts ${bc.members.count} members`);
});

test('presence: bob disconnects and alice gets member_removed', async (t) => {
  const alice = new Client(t, s, { token: token('alice') });
  const bob = new Client(t, s, { token: token('bob') });
  const ac = await alice.join('presence-room-43');
  const added = nextEvent(ac, 'pusher:member_added', 5000, 'member_added at alice');
  await bob.join('presence-room-43');
  await added;
  const removed = nextEvent(ac, 'pusher:member_removed', 5000, 'member_removed at alice');
  await bob.disconnect();
  const member = await removed;
  check(member.id === 'bob', `member_removed for ${show(member)}`);
  check(ac.members.count === 1 && !ac.members.get('bob'), `alice still counts ${ac.members.count} members`);
});

test('presence: carol, not a member of room 42, is refused with 403', async (t) => {
  const carol = new Client(t, s, { token: token('carol') });
  const r = await carol.subscribe('presence-room-42');
  check(!r.ok && r.status === 403, `expected status 403, got ${describe(r)}`);
});

// ---------------------------------------------------------------- private-encrypted

test('encrypted: the server SDK encrypts with the master key and pusher-js decrypts with channelgate\'s shared_secret', async (t) => {
  const alice = new Client(t, s, { token: token('alice') });
  const channel = await alice.join('private-encrypted-team-acme');
  const got = nextEvent(channel, 'plan', 5000, 'the decrypted event');
  const payload = { launch: 'tuesday', codes: [1, 2, 3] };
  await trigger('private-encrypted-team-acme', 'plan', payload);
  const data = await got;
  check(same(data, payload), `decrypted ${show(data)}`);
  const wire = alice.frames.find((f) => f.channel === 'private-encrypted-team-acme' && f.event === 'plan');
  const raw = wire && typeof wire.data === 'string' ? wire.data : show(wire && wire.data);
  check(raw.includes('ciphertext') && !raw.includes('tuesday'), `the frame on the wire was not encrypted: ${raw}`);
});

test('encrypted: bob, of another team, is refused with 403', async (t) => {
  const bob = new Client(t, s, { token: token('bob') });
  const r = await bob.subscribe('private-encrypted-team-acme');
  check(!r.ok && r.status === 403, `expected status 403, got ${describe(r)}`);
});

// ---------------------------------------------------------------- user authentication

test('signin: pusher.signin() through channelgate succeeds and a message sent to alice arrives', async (t) => {
  const alice = new Client(t, s, { token: token('alice') });
  await alice.connected();
  alice.pusher.signin();
  await within(5000, alice.pusher.user.signinDonePromise, 'pusher:signin_success');
  const userData = alice.pusher.user.user_data;
  check(same(userData, { id: 'alice', user_info: { name: 'Alice' } }), `user_data ${show(userData)}`);
  // pusher-js then subscribes to #server-to-user-alice; wait until Sockudo confirmed it.
  await within(
    5000,
    (async () => {
      while (!(alice.pusher.user.serverToUserChannel && alice.pusher.user.serverToUserChannel.subscribed)) await sleep(50);
    })(),
    'the #server-to-user-alice subscription',
  );
  const got = nextEvent(alice.pusher.user, 'direct', 5000, 'the message sent to user alice');
  await sdk('sendToUser', server.sendToUser('alice', 'direct', { text: 'only for alice' }));
  const data = await got;
  check(same(data, { text: 'only for alice' }), `received ${show(data)}`);
});

test('signin: without a valid session pusher.user emits pusher:signin_error status 401', async (t) => {
  const mallory = new Client(t, s, { token: token('alice', { ttlSeconds: -120 }) });
  await mallory.connected();
  const failed = nextEvent(mallory.pusher.user, 'pusher:signin_error', 5000, 'pusher:signin_error');
  mallory.pusher.signin();
  const e = await failed;
  check(e.status === 401, `signin_error ${show(e)}`);
});

// ---------------------------------------------------------------- client events

test('client events: alice and bob, both authorized on private-chat-42, exchange client-typing', async (t) => {
  const alice = new Client(t, s, { token: token('alice') });
  const bob = new Client(t, s, { token: token('bob') });
  const ac = await alice.join('private-chat-42');
  const bc = await bob.join('private-chat-42');
  const atBob = nextEvent(bc, 'client-typing', 5000, 'client-typing at bob');
  check(ac.trigger('client-typing', { from: 'alice' }), 'pusher-js refused to send the client event');
  check(same(await atBob, { from: 'alice' }), 'bob received other data');
  const atAlice = nextEvent(ac, 'client-typing', 5000, 'client-typing at alice');
  check(bc.trigger('client-typing', { from: 'bob' }), 'pusher-js refused to send the client event');
  check(same(await atAlice, { from: 'bob' }), 'alice received other data');
  const echoed = alice.frames.filter((f) => f.event === 'client-typing' && f.data && f.data.from === 'alice');
  check(echoed.length === 0, 'alice received her own client event back');
});

// ---------------------------------------------------------------- Laravel Echo (examples/laravel-echo)

/** Echo configured by the example's own options function. */
function echoFor(t, user) {
  const echo = new Echo({
    ...channelgateEchoOptions({
      key: APP_KEY,
      wsHost: '127.0.0.1',
      wsPort: Number(SOCKUDO_PORT),
      forceTLS: false,
      gatewayUrl: GATEWAY,
      sessionJwt: token(user),
    }),
    Pusher,
  });
  t.cleanup(() => echo.disconnect());
  return echo;
}

test('laravel-echo: Echo.private() and Echo.join() with examples/laravel-echo options', async (t) => {
  const echo = echoFor(t, 'alice');
  const notified = within(
    8000,
    new Promise((resolve, reject) => {
      const channel = echo.private('user-alice');
      channel.error((e) => reject(new Error(`Echo.private('user-alice') refused: ${show(e)}`)));
      channel.listen('.notify', resolve);
      channel.subscribed(() => trigger('private-user-alice', 'notify', { via: 'echo' }).catch(reject));
    }),
    'the event through Echo.private',
  );
  check(same(await notified, { via: 'echo' }), 'Echo delivered other data');
  const here = await within(
    5000,
    new Promise((resolve) => echo.join('room-44').here(resolve)),
    "Echo.join('room-44').here",
  );
  check(same(here, [presenceInfo('alice')]), `here() gave ${show(here)}`);
});

test("laravel-echo: Echo.private('user-bob') as alice reports status 403 through .error()", async (t) => {
  const echo = echoFor(t, 'alice');
  const e = await within(
    5000,
    new Promise((resolve) => echo.private('user-bob').error(resolve)),
    'the .error() callback',
  );
  check(e && e.status === 403, `error ${show(e)}`);
});

// ---------------------------------------------------------------- the server checks what we sign

/** A customHandler that asks channelgate for a signature, then lets `tamper` change it. */
const handlerFor = (bearer, tamper) => async ({ socketId, channelName }, callback) => {
  try {
    const form = tamper.socketId ? { socket_id: tamper.socketId(socketId), channel_name: channelName } : { socket_id: socketId, channel_name: channelName };
    const res = await fetch(`${GATEWAY}/pusher/auth`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${bearer}`, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form),
    });
    if (res.status !== 200) return callback(new Error(`channelgate answered ${res.status}`), null);
    const auth = await res.json();
    callback(null, tamper.response ? tamper.response(auth) : auth);
  } catch (e) {
    callback(e, null);
  }
};

test('forgery: Sockudo refuses a valid channelgate signature made for another socket_id (pusher:error 4009)', async (t) => {
  const other = new Client(t, s, { token: token('alice') });
  const otherSocket = await other.connected();
  const alice = new Client(t, s, { customHandler: handlerFor(token('alice'), { socketId: () => otherSocket }) });
  const mySocket = await alice.connected();
  check(mySocket !== otherSocket, 'both connections got the same socket_id');
  const r = await alice.subscribe('private-user-alice');
  check(!r.ok && r.serverError && r.serverError.code === 4009, `expected pusher:error 4009, got ${describe(r)}`);
  // Control: the same signature on the socket it was made for is accepted.
  const legit = new Client(t, s, { customHandler: handlerFor(token('alice'), {}) });
  await legit.join('private-user-alice');
});

test('forgery: Sockudo refuses presence channel_data altered after signing (pusher:error 4009)', async (t) => {
  const alice = new Client(t, s, {
    customHandler: handlerFor(token('alice'), {
      response: (auth) => {
        const data = JSON.parse(auth.channel_data);
        data.user_info.role = 'owner';
        return { ...auth, channel_data: JSON.stringify(data) };
      },
    }),
  });
  const r = await alice.subscribe('presence-room-42');
  check(!r.ok && r.serverError && r.serverError.code === 4009, `expected pusher:error 4009, got ${describe(r)}`);
  // Control: the same request, untouched, is accepted.
  const legit = new Client(t, s, { customHandler: handlerFor(token('alice'), {}) });
  await legit.join('presence-room-42');
});

process.exitCode = await run();
// pusher-js keeps timers alive in some states; every client is disconnected by now.
setTimeout(() => process.exit(process.exitCode), 200).unref();
