// End-to-end suite: pusher-js clients (Node build) authorized by channelgate,
// connected to a real Sockudo, with events published by the official `pusher`
// server SDK. Started by run.sh, which passes the ports and the per-run secrets:
//   SOCKUDO_PORT, CHANNELGATE_URL, PUSHER_APP_SECRET,
//   PUSHER_ENCRYPTION_MASTER_KEY_BASE64, SESSION_JWT_SECRET,
//   CHANNELGATE_ADMIN_URL, CHANNELGATE_ADMIN_TOKEN (admin API, publish proxy),
//   CHANNELGATE_PUBLISH_SECRET, CHANNELGATE_SDK_SECRET (publish.clients), E2E_HOOKS_PORT (the webhook
//   receiver this process runs: channelgate's webhooks.forward_to)
// Prints PASS/FAIL per case; the last line is `N passed, M failed`.
import { createHmac, randomBytes } from 'node:crypto';
import Echo from 'laravel-echo';
import PusherServer from 'pusher';
import Pusher from 'pusher-js';
import { channelgateEchoOptions } from '../../examples/laravel-echo/echo-options.js';
import { Client, describe, nextEvent, settings } from './lib/clients.mjs';
import { Failure, check, run, same, show, sleep, test, within } from './lib/harness.mjs';
import { mintToken } from './lib/jwt.mjs';
import { hookEvents, startReceiver } from './lib/webhooks.mjs';

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

const LOCAL_KEY = 'e2e-local'; // channelgate.yaml publish.clients
const SDK_KEY = 'my-app-local'; // channelgate.yaml publish.clients and webhooks.sign_with

const SOCKUDO_PORT = env('SOCKUDO_PORT');
const GATEWAY = env('CHANNELGATE_URL');
const JWT_SECRET = env('SESSION_JWT_SECRET');
const APP_SECRET = env('PUSHER_APP_SECRET');
const ADMIN = env('CHANNELGATE_ADMIN_URL');
const ADMIN_TOKEN = env('CHANNELGATE_ADMIN_TOKEN');
const PUBLISH_SECRET = env('CHANNELGATE_PUBLISH_SECRET');
const HOOKS_PORT = env('E2E_HOOKS_PORT');
const s = settings({ appKey: APP_KEY, sockudoPort: SOCKUDO_PORT, gatewayUrl: GATEWAY });

// The official server SDK, as the app's backend would use it: it holds the
// secret and the master key and talks to Sockudo's REST API.
const server = new PusherServer({
  appId: APP_ID,
  key: APP_KEY,
  secret: APP_SECRET,
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
  // Terminated by the admin-API case only, so no other case meets the revocation.
  dave: { sub: 'dave', name: 'Dave', role: 'member', email: 'dave@example.com', rooms: ['42'], team: 'acme' },
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

// The app's server SDK as the README's "Keep every secret out of app code" sets it up: a
// LOCAL key and secret (channelgate's publish.clients), channelgate's admin listener as
// host, and no encryptionMasterKeyBase64. channelgate re-signs with the real secret.
const adminAddr = new URL(ADMIN);
const publisherWith = (key, secret) =>
  new PusherServer({ appId: APP_ID, key, secret, host: adminAddr.hostname, port: adminAddr.port, useTLS: false, timeout: 5000 });
const publisher = publisherWith(LOCAL_KEY, PUBLISH_SECRET);
// The credential webhooks are re-signed with (sdk.mjs publishes with it).
const sdkPublisher = new PusherServer({ appId: '424242', key: SDK_KEY, secret: env('CHANNELGATE_SDK_SECRET'), host: adminAddr.hostname, port: adminAddr.port, useTLS: false });

/** Awaits an SDK call that must fail; returns its RequestError (status, parsed body). */
async function sdkRefused(what, call) {
  let res;
  try {
    res = await call();
  } catch (e) {
    let body = e.body;
    try {
      body = JSON.parse(e.body);
    } catch {
      // not JSON: keep the text
    }
    return { status: e.status, body, message: e.message };
  }
  throw new Failure(`${what} succeeded (status ${res.status}); expected a refusal`);
}

/** A request to channelgate's admin API; `token: null` sends none. */
async function admin(method, path, body, { token: bearer = ADMIN_TOKEN } = {}) {
  const headers = {};
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${ADMIN}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = text;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: json };
}

/** The webhook receiver (lib/webhooks.mjs), started by a precondition. */
let hooks = null;

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

test('setup: channelgate\'s admin listener is ready and the webhook receiver listens', async () => {
  const res = await fetch(`${ADMIN}/readyz`);
  check(res.status === 200, `GET ${ADMIN}/readyz answered ${res.status}`);
  try {
    hooks = await startReceiver(HOOKS_PORT);
  } catch (e) {
    throw new Failure(`the webhook receiver cannot listen on 127.0.0.1:${HOOKS_PORT}: ${e.message}`);
  }
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

// ---------------------------------------------------------------- admin API: terminate a user

test('terminate: the admin API disconnects a signed-in user (4009), refuses his sign-in and channels (403) until lifted', async (t) => {
  t.cleanup(() => admin('DELETE', '/admin/users/dave/terminate')); // dave is never left revoked
  const anonymous = await admin('POST', '/admin/users/dave/terminate', undefined, { token: null });
  check(anonymous.status === 401 && anonymous.body.reason === 'admin_token', `without the admin token: ${show(anonymous)}`);

  const dave = new Client(t, s, { token: token('dave') });
  await dave.connected();
  dave.pusher.signin();
  await within(5000, dave.pusher.user.signinDonePromise, 'pusher:signin_success');
  check(dave.pusher.user.user_data && dave.pusher.user.user_data.id === 'dave', `sign-in gave user_data ${show(dave.pusher.user.user_data)}`);
  const own = await dave.join('private-user-dave');

  const errors = [];
  dave.pusher.connection.bind('error', (e) => errors.push(e));
  const disconnected = within(
    5000,
    new Promise((resolve) => dave.pusher.connection.bind('state_change', (c) => c.current === 'disconnected' && resolve())),
    "dave's connection to change state to disconnected",
  );
  const res = await admin('POST', '/admin/users/dave/terminate', { ttl: '10m' });
  check(
    res.status === 200 && res.body.terminated === true && typeof res.body.revoked_until === 'string',
    `POST /admin/users/dave/terminate answered ${res.status} ${show(res.body)}`,
  );
  await disconnected;
  // Sockudo sends a pusher:error frame, then closes the WebSocket with the same code;
  // pusher-js reports the close as a WebSocketError and, for 4000-4099, does not reconnect.
  const frame = dave.frames.find((f) => f.event === 'pusher:error');
  check(frame && frame.data && frame.data.code === 4009, `expected a pusher:error frame with code 4009, got ${show(frame)}`);
  const closed = errors.find((e) => e.type === 'WebSocketError');
  check(closed && closed.error && closed.error.data && closed.error.data.code === 4009, `expected the WebSocket closed with 4009, got errors ${show(errors)}`);

  const listed = await admin('GET', '/admin/revocations');
  check(
    listed.status === 200 && Array.isArray(listed.body) && listed.body.some((r) => r.kind === 'sub' && r.value === 'dave'),
    `GET /admin/revocations answered ${listed.status} ${show(listed.body)}`,
  );

  // Reconnecting: pusher-js signs in again and resubscribes by itself; channelgate refuses both.
  const signinRefused = nextEvent(dave.pusher.user, 'pusher:signin_error', 5000, 'pusher:signin_error after reconnecting');
  const channelRefused = nextEvent(own, 'pusher:subscription_error', 5000, 'the outcome of resubscribing to private-user-dave');
  dave.pusher.connect();
  const signinError = await signinRefused;
  check(signinError.status === 403, `sign-in after terminate: ${show(signinError)}, expected status 403`);
  const channelError = await channelRefused;
  check(channelError.status === 403, `private-user-dave after terminate: ${show(channelError)}, expected status 403`);
  for (const [path, form] of [
    ['/pusher/user-auth', { socket_id: '1.1' }],
    ['/pusher/auth', { socket_id: '1.1', channel_name: 'private-user-dave' }],
  ]) {
    const direct = await gatewayReason(path, form, token('dave'));
    check(direct.status === 403 && direct.reason === 'user_revoked', `${path} answered ${show(direct)}, expected 403 user_revoked`);
  }

  const lifted = await admin('DELETE', '/admin/users/dave/terminate');
  check(lifted.status === 200 && lifted.body.lifted === true, `DELETE /admin/users/dave/terminate answered ${lifted.status} ${show(lifted.body)}`);
  const again = new Client(t, s, { token: token('dave') });
  await again.connected();
  again.pusher.signin();
  await within(5000, again.pusher.user.signinDonePromise, 'pusher:signin_success after the lift');
  check(again.pusher.user.user_data && again.pusher.user.user_data.id === 'dave', `sign-in after the lift gave user_data ${show(again.pusher.user.user_data)}`);
  await again.join('private-user-dave');
});

// ---------------------------------------------------------------- publish proxy (admin listener)

test('publish: the pusher SDK with a local key and secret triggers through channelgate to a private channel', async (t) => {
  const alice = new Client(t, s, { token: token('alice') });
  const channel = await alice.join('private-user-alice');
  const got = nextEvent(channel, 'notify', 5000, 'the event published through channelgate');
  await sdk('SDK trigger through channelgate', publisher.trigger('private-user-alice', 'notify', { via: 'proxy' }));
  const data = await got;
  check(same(data, { via: 'proxy' }), `received ${show(data)}`);
});

test('publish: an app without the master key publishes to private-encrypted-*; channelgate encrypts, pusher-js decrypts', async (t) => {
  const name = 'private-encrypted-team-acme';
  const payload = { launch: 'friday', codes: [4, 5, 6] };
  // The SDK encrypts in trigger() itself (lib/events.js) and throws without
  // encryptionMasterKey, before any request. Checked first, before anyone listens.
  let thrown = null;
  try {
    await publisher.trigger(name, 'plan', payload);
  } catch (e) {
    thrown = e;
  }
  check(thrown && /encryptionMasterKey/.test(thrown.message), `the SDK's trigger() without a master key did not refuse as expected: ${thrown ? thrown.message : 'it sent the event'}`);

  const alice = new Client(t, s, { token: token('alice') });
  const channel = await alice.join(name);
  // So the app sends the REST request trigger() would send for a plain channel -- `data`
  // is the JSON text, as the SDK encodes non-string data -- through the SDK's own signed
  // post() (local credential); channelgate seals exactly that string.
  const got = nextEvent(channel, 'plan', 5000, 'the event decrypted by pusher-js');
  await sdk('SDK post /events through channelgate', publisher.post({ path: '/events', body: { name: 'plan', channels: [name], data: JSON.stringify(payload) } }));
  const data = await got;
  check(same(data, payload), `decrypted ${show(data)}`);
  const wire = alice.frames.find((f) => f.channel === name && f.event === 'plan');
  const raw = wire && typeof wire.data === 'string' ? wire.data : show(wire && wire.data);
  check(raw.includes('ciphertext') && raw.includes('nonce') && !raw.includes('friday'), `the frame on the wire was not sealed: ${raw}`);
  // A string that is not JSON arrives as that same string.
  const gotText = nextEvent(channel, 'note', 5000, 'the decrypted text event');
  await sdk('SDK post /events (text) through channelgate', publisher.post({ path: '/events', body: { name: 'note', channels: [name], data: 'plain "text", not JSON' } }));
  const text = await gotText;
  check(text === 'plain "text", not JSON', `decrypted ${show(text)}`);
});

test('publish: a wrong local secret, or the real Pusher credential, gets 401 and nothing arrives', async (t) => {
  const alice = new Client(t, s, { token: token('alice') });
  const channel = await alice.join('private-user-alice');
  const refusals = [
    ['a wrong local secret', publisherWith(LOCAL_KEY, randomBytes(24).toString('base64')), 'invalid_signature'],
    ['the real app key and secret (only publish.clients may publish)', publisherWith(APP_KEY, APP_SECRET), 'unknown_key'],
  ];
  for (const [what, sdkClient, reason] of refusals) {
    const r = await sdkRefused(`SDK trigger with ${what}`, () => sdkClient.trigger('private-user-alice', 'notify', { forged: what }));
    check(r.status === 401 && r.body && r.body.reason === reason, `with ${what}: ${r.message}, body ${show(r.body)}; expected 401 ${reason}`);
  }
  // Control: the right credential gets through, and is the only event that does.
  const got = nextEvent(channel, 'notify', 5000, 'the control event');
  await sdk('SDK trigger with the local credential', publisher.trigger('private-user-alice', 'notify', { control: true }));
  check(same(await got, { control: true }), 'the control event carried other data');
  await sleep(300);
  const arrived = alice.frames.filter((f) => f.channel === 'private-user-alice' && f.event === 'notify');
  check(arrived.length === 1, `alice received ${show(arrived.map((f) => f.data))}`);
});

// ---------------------------------------------------------------- webhooks (Sockudo -> channelgate -> the app)

const probeChannel = (user) => `private-hooks-${user}-${randomBytes(4).readUInt32BE()}`;
const occupied = (path, channel) => (h) =>
  h.path === path && hookEvents(h).some((e) => e.name === 'channel_occupied' && e.channel === channel);
const hmacHex = (secret, text) => createHmac('sha256', secret).update(text).digest('hex');
/** The webhook headers worth showing. */
const pick = (h) => ({ 'content-type': h['content-type'], 'x-pusher-key': h['x-pusher-key'], 'x-pusher-signature': h['x-pusher-signature'] });

async function postWebhook(headers, body) {
  const res = await fetch(`${GATEWAY}/pusher/webhooks`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body });
  const json = await res.json().catch(() => ({}));
  return { status: res.status, ...json };
}

test("webhooks: Sockudo's channel_occupied reaches the app through channelgate, byte-identical and re-signed with the local credential", async (t) => {
  const alice = new Client(t, s, { token: token('alice') });
  const channel = probeChannel('alice');
  await alice.join(channel);
  // Sockudo sends the same webhook twice (sockudo.toml): straight to /direct, the
  // reference, and to channelgate, which forwards it to /hooks.
  const direct = await hooks.waitFor(occupied('/direct', channel), 5000, `Sockudo's channel_occupied for ${channel} at /direct`);
  let relayed;
  try {
    relayed = await hooks.waitFor(occupied('/hooks', channel), 3000, 'the same webhook through channelgate');
  } catch (e) {
    // Why: replay Sockudo's reference copy to channelgate and show its answer.
    const replay = await postWebhook(
      { 'X-Pusher-Key': direct.headers['x-pusher-key'] ?? '', 'X-Pusher-Signature': direct.headers['x-pusher-signature'] ?? '' },
      direct.body,
    );
    throw new Failure(`${e.message}; Sockudo sent headers ${show(pick(direct.headers))} body ${direct.body}; the same request replayed to channelgate: ${show(replay)}`);
  }
  check(relayed.body.equals(direct.body), `the body changed on the way:\n  sent      ${direct.body}\n  forwarded ${relayed.body}`);
  // Re-signed (webhooks.sign_with) with the local credential the app's SDK holds.
  check(relayed.headers['x-pusher-key'] === SDK_KEY, `X-Pusher-Key ${show(relayed.headers['x-pusher-key'])}`);
  check(direct.headers['x-pusher-key'] === APP_KEY, `Sockudo sent X-Pusher-Key ${show(direct.headers['x-pusher-key'])}`);
  const hook = sdkPublisher.webhook({ headers: relayed.headers, rawBody: relayed.body.toString('utf8') });
  check(hook.isValid(), `the pusher SDK's WebHook.isValid() (local credential) refuses the forwarded webhook: headers ${show(pick(relayed.headers))}`);
  const timeMs = hook.getData().time_ms;
  check(Math.abs(Date.now() - timeMs) < 60_000, `time_ms ${timeMs} is not now in milliseconds`);
});

test('webhooks: forged, unsigned, foreign-key, altered and stale webhooks get 401 and are never forwarded', async () => {
  const channel = probeChannel('forged');
  const body = JSON.stringify({ time_ms: Date.now(), events: [{ name: 'channel_occupied', channel }] });
  const stale = JSON.stringify({ time_ms: Date.now() - 10 * 60_000, events: [{ name: 'channel_occupied', channel }] });
  const before = hooks.received.length;
  const forgeries = [
    ['signed with another secret', { 'X-Pusher-Key': APP_KEY, 'X-Pusher-Signature': hmacHex(randomBytes(24).toString('base64'), body) }, body, 'invalid_webhook_signature'],
    ['without a signature', { 'X-Pusher-Key': APP_KEY }, body, 'invalid_webhook_signature'],
    ['with another key', { 'X-Pusher-Key': 'another-key', 'X-Pusher-Signature': hmacHex(APP_SECRET, body) }, body, 'invalid_webhook_key'],
    ['altered after signing', { 'X-Pusher-Key': APP_KEY, 'X-Pusher-Signature': hmacHex(APP_SECRET, body) }, body.replace('channel_occupied', 'channel_vacated'), 'invalid_webhook_signature'],
    ['10 minutes old (max_age 300s)', { 'X-Pusher-Key': APP_KEY, 'X-Pusher-Signature': hmacHex(APP_SECRET, stale) }, stale, 'stale_webhook'],
  ];
  for (const [what, headers, text, reason] of forgeries) {
    const r = await postWebhook(headers, text);
    check(r.status === 401 && r.reason === reason, `a webhook ${what}: channelgate answered ${show(r)}, expected 401 ${reason}`);
  }
  await sleep(300);
  const leaked = hooks.received.slice(before).filter((h) => h.body.includes(channel));
  check(leaked.length === 0 && hooks.received.length === before, `the app received ${leaked.length} forged webhook(s): ${leaked.map((h) => h.body).join(' ')}`);
  // Control: the same webhook signed with the app secret is forwarded, unchanged.
  const ok = await postWebhook({ 'X-Pusher-Key': APP_KEY, 'X-Pusher-Signature': hmacHex(APP_SECRET, body) }, body);
  check(ok.status === 200 && ok.forwarded === true, `the validly signed control webhook: channelgate answered ${show(ok)}`);
  const got = await hooks.waitFor((h) => h.path === '/hooks' && h.body.includes(channel), 2000, 'the control webhook at the app');
  check(got.body.toString('utf8') === body, `the control webhook arrived as ${got.body}`);
});

process.exitCode = await run();
if (hooks) await hooks.close();
// pusher-js keeps timers alive in some states; every client is disconnected by now.
setTimeout(() => process.exit(process.exitCode), 200).unref();
