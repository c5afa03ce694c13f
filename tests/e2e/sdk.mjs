// The official server SDKs, unchanged, through channelgate's publish proxy: npm `pusher`
// (5.3) and PyPI `pusher` (3.3, in a venv made by run.sh) configured as their READMEs
// say, except host/port and the credential, which is channelgate's LOCAL one
// (publish.clients `my-app-local`: app_id 424242, its own secret and master key). Events
// go through channelgate to a real Sockudo; pusher-js subscribers authorized by
// channelgate receive and decrypt them. Webhooks arrive re-signed with the local
// credential, and both SDKs validate them. The README's examples
// (examples/server-sdk/publish.{js,py}) run here as they are.
// Started by run.sh with: SOCKUDO_PORT, CHANNELGATE_URL, CHANNELGATE_ADMIN_URL,
//   SESSION_JWT_SECRET, PUSHER_APP_SECRET, CHANNELGATE_SDK_SECRET,
//   CHANNELGATE_SDK_MASTER_KEY, E2E_PYTHON, E2E_HOOKS_PORT.
// Prints PASS/FAIL per case; the last line is `N passed, M failed`.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Echo from 'laravel-echo';
import PusherServer from 'pusher';
import Pusher from 'pusher-js';
import { channelgateEchoOptions } from '../../examples/laravel-echo/echo-options.js';
import { Client, nextEvent, settings } from './lib/clients.mjs';
import { Failure, check, run, same, show, sleep, test, within } from './lib/harness.mjs';
import { mintToken } from './lib/jwt.mjs';
import { hookEvents, startReceiver } from './lib/webhooks.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const run_ = promisify(execFile);

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.log(`FAIL setup: environment variable ${name} is not set (run tests/e2e/run.sh)`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  return v;
};

// Must match channelgate.yaml, sockudo.toml and policies/.
const APP_ID = 'e2e';
const APP_KEY = 'e2e-key';
const SDK_KEY = 'my-app-local';
const SDK_APP_ID = '424242';

const SOCKUDO_PORT = env('SOCKUDO_PORT');
const GATEWAY = env('CHANNELGATE_URL');
const ADMIN = new URL(env('CHANNELGATE_ADMIN_URL'));
const JWT_SECRET = env('SESSION_JWT_SECRET');
const APP_SECRET = env('PUSHER_APP_SECRET');
const SDK_SECRET = env('CHANNELGATE_SDK_SECRET');
const SDK_MASTER = env('CHANNELGATE_SDK_MASTER_KEY');
const PYTHON = env('E2E_PYTHON');
const HOOKS_PORT = env('E2E_HOOKS_PORT');
const s = settings({ appKey: APP_KEY, sockudoPort: SOCKUDO_PORT, gatewayUrl: GATEWAY });

const users = {
  alice: { sub: 'alice', name: 'Alice', rooms: ['42'], team: 'acme' },
  bob: { sub: 'bob', name: 'Bob', rooms: ['42'], team: 'globex' },
  // Terminated by the SDKs' terminate cases only.
  erin: { sub: 'erin', name: 'Erin', rooms: [] },
  frank: { sub: 'frank', name: 'Frank', rooms: [] },
};
const token = (user) => mintToken(JWT_SECRET, { iss: 'channelgate-e2e', aud: 'e2e', ...users[user] });

// npm `pusher` as its README configures it, with channelgate's local credential.
const nodeSdk = (overrides = {}) =>
  new PusherServer({
    appId: SDK_APP_ID,
    key: SDK_KEY,
    secret: SDK_SECRET,
    encryptionMasterKeyBase64: SDK_MASTER,
    host: ADMIN.hostname,
    port: ADMIN.port,
    useTLS: false,
    timeout: 5000,
    ...overrides,
  });
const node = nodeSdk();

/** Awaits an npm SDK call; its RequestError becomes a failure with the status and body. */
async function nodeCall(what, promise) {
  try {
    const res = await promise;
    check(res.status === 200, `${what} answered ${res.status}`);
    return res.json();
  } catch (e) {
    if (e instanceof Failure) throw e;
    throw new Failure(`${what}: ${e.message}${e.status ? ` (status ${e.status}, body ${e.body})` : ''}`);
  }
}

/** An npm SDK call that must be refused: `{status, reason}`. */
async function nodeRefused(what, call) {
  let res;
  try {
    res = await call();
  } catch (e) {
    let body = {};
    try {
      body = JSON.parse(e.body);
    } catch {
      // not JSON
    }
    return { status: e.status, reason: body.reason, message: e.message };
  }
  throw new Failure(`${what} succeeded (status ${res.status}); expected a refusal`);
}

const pyEnv = {
  PATH: process.env.PATH,
  CHANNELGATE_HOST: ADMIN.hostname,
  CHANNELGATE_PORT: ADMIN.port,
  CHANNELGATE_PUBLISH_SECRET: SDK_SECRET,
  CHANNELGATE_PUBLISH_MASTER_KEY: SDK_MASTER,
};

/** One PyPI SDK call (lib/py_sdk.py): `{ok, result}` or `{ok: false, error, message}`. */
async function py(call, args = [], kwargs = {}, client = undefined) {
  const cmd = JSON.stringify({ call, args, kwargs, client });
  let out;
  try {
    out = await run_(PYTHON, [join(here, 'lib', 'py_sdk.py'), cmd], { env: pyEnv, timeout: 20000 });
  } catch (e) {
    throw new Failure(`python ${call}: ${e.message} ${e.stderr ?? ''}`);
  }
  return JSON.parse(out.stdout.trim().split('\n').pop());
}

async function pyOk(call, args = [], kwargs = {}) {
  const r = await py(call, args, kwargs);
  check(r.ok, `python ${call}(${show(args)}) failed: ${r.error} ${r.message}`);
  return r.result;
}

/** A refusal as the Python SDK reports it: its error class and channelgate's reason. */
async function pyRefused(call, args, kwargs, client) {
  const r = await py(call, args, kwargs, client);
  check(!r.ok, `python ${call} succeeded; expected a refusal`);
  const json = r.message.slice(r.message.indexOf('{'));
  let reason;
  try {
    reason = JSON.parse(json).reason;
  } catch {
    // not JSON
  }
  return { error: r.error, reason, message: r.message };
}

/** Waits until the client received `event` on `channel` with data equal to `data`. */
const arrives = (channel, event, data, what) => {
  const got = nextEvent(channel, event, 5000, what);
  return async () => {
    const d = await got;
    check(same(d, data), `${what}: received ${show(d)}, expected ${show(data)}`);
  };
};

/** Signs alice in and waits for her #server-to-user channel. */
async function signedIn(client) {
  await client.connected();
  client.pusher.signin();
  await within(5000, client.pusher.user.signinDonePromise, 'pusher:signin_success');
  await within(
    5000,
    (async () => {
      while (!(client.pusher.user.serverToUserChannel && client.pusher.user.serverToUserChannel.subscribed)) await sleep(50);
    })(),
    'the #server-to-user subscription',
  );
}

/** A signed-in client whose connection must be terminated; resolves when it is closed with 4009. */
async function terminated(t, user) {
  const c = new Client(t, s, { token: token(user) });
  await signedIn(c);
  const closed = within(
    5000,
    new Promise((resolve) => c.pusher.connection.bind('state_change', (x) => x.current === 'disconnected' && resolve())),
    `${user}'s connection to close`,
  );
  return async () => {
    await closed;
    const frame = c.frames.find((f) => f.event === 'pusher:error');
    check(frame && frame.data && frame.data.code === 4009, `expected pusher:error 4009, got ${show(frame)}`);
  };
}

let hooks = null;

// ---------------------------------------------------------------- setup

test('setup: channelgate and its admin listener are ready; the webhook receiver listens', async () => {
  for (const url of [`${GATEWAY}/readyz`, `${ADMIN.origin}/readyz`]) {
    const res = await fetch(url);
    check(res.status === 200, `GET ${url} answered ${res.status}`);
  }
  hooks = await startReceiver(HOOKS_PORT);
}, { precondition: true });

test('setup: the PyPI SDK runs (venv python imports pusher 3.3)', async () => {
  const out = await run_(PYTHON, ['-c', 'import pusher.version as v; print(v.VERSION)']);
  check(out.stdout.trim().startsWith('3.3'), `pusher version ${out.stdout.trim()}`);
}, { precondition: true });

// ---------------------------------------------------------------- both SDKs, call by call

const sdks = [
  {
    name: 'npm pusher',
    trigger: (channels, event, data, socketId) =>
      nodeCall('trigger', node.trigger(channels, event, data, socketId ? { socket_id: socketId } : undefined)),
    batch: (batch) => nodeCall('triggerBatch', node.triggerBatch(batch)),
    sendToUser: (user, event, data) => nodeCall('sendToUser', node.sendToUser(user, event, data)),
    channels: () => nodeCall('get /channels', node.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } })),
    channel: (name) => nodeCall('get /channels/{name}', node.get({ path: `/channels/${name}`, params: { info: 'user_count' } })),
    users: (name) => nodeCall('get /channels/{name}/users', node.get({ path: `/channels/${name}/users` })),
    terminate: (user) => nodeCall('terminateUserConnections', node.terminateUserConnections(user)),
    victim: 'erin',
  },
  {
    name: 'PyPI pusher',
    trigger: (channels, event, data, socketId) => pyOk('trigger', [channels, event, data], socketId ? { socket_id: socketId } : {}),
    batch: (batch) => pyOk('trigger_batch', [batch]),
    sendToUser: (user, event, data) => pyOk('send_to_user', [user, event, data]),
    channels: () => pyOk('channels_info', [], { prefix_filter: 'presence-', attributes: ['user_count'] }),
    channel: (name) => pyOk('channel_info', [name], { attributes: ['user_count'] }),
    users: (name) => pyOk('users_info', [name]),
    terminate: (user) => pyOk('terminate_user_connections', [user]),
    victim: 'frank',
  },
];

for (const sdk of sdks) {
  test(`${sdk.name}: trigger to one channel and to several, with socket_id exclusion`, async (t) => {
    const alice = new Client(t, s, { token: token('alice') });
    const bob = new Client(t, s, { token: token('bob') });
    const own = await alice.join('private-user-alice');
    const aliceChat = await alice.join('private-chat-42');
    const bobChat = await bob.join('private-chat-42');
    const one = arrives(own, 'notify', { via: sdk.name }, 'the event on private-user-alice');
    await sdk.trigger('private-user-alice', 'notify', { via: sdk.name });
    await one();
    // Two channels, alice's socket excluded: bob gets it on chat-42, alice on neither.
    const atBob = arrives(bobChat, 'multi', { n: 1 }, 'the event at bob');
    await sdk.trigger(['private-user-alice', 'private-chat-42'], 'multi', { n: 1 }, alice.pusher.connection.socket_id);
    await atBob();
    // Then the same without exclusion: alice gets both copies, and only these.
    const both = [arrives(own, 'multi', { n: 2 }, 'n=2 on her channel'), arrives(aliceChat, 'multi', { n: 2 }, 'n=2 on chat-42')];
    await sdk.trigger(['private-user-alice', 'private-chat-42'], 'multi', { n: 2 });
    for (const got of both) await got();
    const excluded = alice.frames.filter((f) => f.event === 'multi' && f.data && f.data.n === 1);
    check(excluded.length === 0, `the excluded socket received ${show(excluded)}`);
  });

  test(`${sdk.name}: an encrypted trigger sealed by the SDK with the local master key is decrypted by pusher-js`, async (t) => {
    const alice = new Client(t, s, { token: token('alice') });
    const channel = await alice.join('private-encrypted-team-acme');
    const payload = { secret: `${sdk.name} plan`, codes: [7, 8] };
    const got = arrives(channel, 'plan', payload, 'the decrypted event');
    await sdk.trigger('private-encrypted-team-acme', 'plan', payload);
    await got();
    const wire = alice.frames.find((f) => f.channel === 'private-encrypted-team-acme' && f.event === 'plan');
    const raw = wire && typeof wire.data === 'string' ? wire.data : show(wire && wire.data);
    check(raw.includes('ciphertext') && !raw.includes('plan"'), `the frame on the wire was not sealed: ${raw}`);
  });

  test(`${sdk.name}: trigger_batch with a plain and an encrypted event`, async (t) => {
    const alice = new Client(t, s, { token: token('alice') });
    const own = await alice.join('private-user-alice');
    const team = await alice.join('private-encrypted-team-acme');
    const plain = arrives(own, 'b1', { i: 1 }, 'the plain batch event');
    const sealed = arrives(team, 'b2', { i: 2 }, 'the encrypted batch event');
    await sdk.batch([
      { channel: 'private-user-alice', name: 'b1', data: { i: 1 } },
      { channel: 'private-encrypted-team-acme', name: 'b2', data: { i: 2 } },
    ]);
    await plain();
    await sealed();
  });

  test(`${sdk.name}: send_to_user reaches the signed-in user`, async (t) => {
    const alice = new Client(t, s, { token: token('alice') });
    await signedIn(alice);
    const got = arrives(alice.pusher.user, 'direct', { to: 'alice', by: sdk.name }, 'the message to user alice');
    await sdk.sendToUser('alice', 'direct', { to: 'alice', by: sdk.name });
    await got();
  });

  test(`${sdk.name}: channels list and channel info with attributes, users of a presence channel`, async (t) => {
    const alice = new Client(t, s, { token: token('alice') });
    const bob = new Client(t, s, { token: token('bob') });
    await alice.join('presence-room-42');
    await bob.join('presence-room-42');
    const list = await sdk.channels();
    const room = list.channels && list.channels['presence-room-42'];
    check(room && room.user_count === 2, `channels list ${show(list)}`);
    const info = await sdk.channel('presence-room-42');
    check(info.occupied === true && info.user_count === 2, `channel info ${show(info)}`);
    const members = await sdk.users('presence-room-42');
    const ids = (members.users || []).map((u) => u.id).sort();
    check(same(ids, ['alice', 'bob']), `users ${show(members)}`);
  });

  test(`${sdk.name}: terminate_user_connections closes the user's connections (4009)`, async (t) => {
    const closed = await terminated(t, sdk.victim);
    await sdk.terminate(sdk.victim);
    await closed();
  });
}

// ---------------------------------------------------------------- refusals

test('refusals: a wrong app id, a payload sealed with another key, an unknown endpoint -- 4xx, nothing delivered', async (t) => {
  const alice = new Client(t, s, { token: token('alice') });
  const team = await alice.join('private-encrypted-team-acme');
  const otherKey = randomBytes(32).toString('base64');
  const cases = [
    ['npm: the local key with another app id', () => nodeSdk({ appId: '999' }).trigger('private-encrypted-team-acme', 'bad', { n: 1 }), 403, 'app_id_mismatch'],
    ['npm: sealed with another master key', () => nodeSdk({ encryptionMasterKeyBase64: otherKey }).trigger('private-encrypted-team-acme', 'bad', { n: 2 }), 400, 'undecryptable_payload'],
    ['npm: an endpoint the proxy does not serve', () => node.get({ path: '/webhooks' }), 404, 'unknown_endpoint'],
  ];
  for (const [what, call, status, reason] of cases) {
    const r = await nodeRefused(what, call);
    check(r.status === status && r.reason === reason, `${what}: ${r.message} ${show(r)}; expected ${status} ${reason}`);
  }
  const pyCases = [
    ['python: the local key with another app id', 'trigger', ['private-encrypted-team-acme', 'bad', { n: 3 }], { app_id: '999' }, 'PusherForbidden', 'app_id_mismatch'],
    ['python: sealed with another master key', 'trigger', ['private-encrypted-team-acme', 'bad', { n: 4 }], { master: otherKey }, 'PusherBadRequest', 'undecryptable_payload'],
    ['python: a wrong local secret', 'trigger', ['private-encrypted-team-acme', 'bad', { n: 5 }], { secret: 'not-the-secret' }, 'PusherBadAuth', 'invalid_signature'],
  ];
  for (const [what, call, args, client, error, reason] of pyCases) {
    const r = await pyRefused(call, args, {}, client);
    check(r.error === error && r.reason === reason, `${what}: ${show(r)}; expected ${error} ${reason}`);
  }
  // Control: a valid event arrives, and it is the only one.
  const ok = arrives(team, 'good', { n: 0 }, 'the control event');
  await nodeCall('trigger', node.trigger('private-encrypted-team-acme', 'good', { n: 0 }));
  await ok();
  await sleep(300);
  const leaked = alice.frames.filter((f) => f.event === 'bad');
  check(leaked.length === 0, `refused events arrived: ${show(leaked)}`);
});

// ---------------------------------------------------------------- webhooks

test("webhooks: Sockudo's webhook arrives re-signed with the local credential; both SDKs validate it", async (t) => {
  const alice = new Client(t, s, { token: token('alice') });
  const channel = `private-hooks-alice-${randomBytes(4).readUInt32BE()}`;
  await alice.join(channel);
  const isOccupied = (path) => (h) => h.path === path && hookEvents(h).some((e) => e.name === 'channel_occupied' && e.channel === channel);
  const direct = await hooks.waitFor(isOccupied('/direct'), 5000, `Sockudo's reference copy for ${channel}`);
  const relayed = await hooks.waitFor(isOccupied('/hooks'), 3000, 'the webhook through channelgate');
  check(relayed.body.equals(direct.body), `the body changed on the way:\n  sent      ${direct.body}\n  forwarded ${relayed.body}`);
  check(relayed.headers['x-pusher-key'] === SDK_KEY, `X-Pusher-Key ${show(relayed.headers['x-pusher-key'])}`);
  const rawBody = relayed.body.toString('utf8');
  check(node.webhook({ headers: relayed.headers, rawBody }).isValid(), 'npm pusher (local credential): WebHook.isValid() is false');
  const real = new PusherServer({ appId: APP_ID, key: APP_KEY, secret: APP_SECRET, host: '127.0.0.1', port: SOCKUDO_PORT, useTLS: false });
  check(!real.webhook({ headers: relayed.headers, rawBody }).isValid(), 'the forwarded webhook still validates with the real credential');
  const validated = await pyOk('validate_webhook', [relayed.headers['x-pusher-key'], relayed.headers['x-pusher-signature'], rawBody]);
  check(validated && Array.isArray(validated.events) && validated.events.some((e) => e.channel === channel), `python validate_webhook returned ${show(validated)}`);
});

// ---------------------------------------------------------------- the README's examples, as they are

for (const [name, cmd, args, marker] of [
  ['examples/server-sdk/publish.js (npm pusher)', process.execPath, [join(root, 'examples/server-sdk/publish.js')], 'node'],
  ['examples/server-sdk/publish.py (PyPI pusher)', PYTHON, [join(root, 'examples/server-sdk/publish.py')], 'python'],
]) {
  test(`README example ${name}: every call arrives`, async (t) => {
    const alice = new Client(t, s, { token: token('alice') });
    await signedIn(alice);
    const own = await alice.join('private-user-alice');
    const team = await alice.join('private-encrypted-team-acme');
    await alice.join('presence-room-42');
    const launch = marker === 'node' ? 'friday' : 'monday';
    const waits = [
      arrives(own, 'notify', { text: `hello from ${marker}` }, 'the notify event'),
      arrives(team, 'plan', { launch }, 'the decrypted plan event'),
      arrives(alice.pusher.user, 'direct', { text: marker === 'node' ? 'only for alice' : 'python, only for alice' }, 'the message to alice'),
    ];
    const out = await run_(cmd, args, {
      env: {
        PATH: process.env.PATH,
        NODE_PATH: join(here, 'node_modules'),
        CHANNELGATE_HOST: ADMIN.hostname,
        CHANNELGATE_PORT: ADMIN.port,
        CHANNELGATE_PUBLISH_SECRET: SDK_SECRET,
        CHANNELGATE_PUBLISH_MASTER_KEY: SDK_MASTER,
      },
      timeout: 20000,
    }).catch((e) => {
      throw new Failure(`${name} failed: ${e.message} ${e.stderr ?? ''}`);
    });
    for (const got of waits) await got();
    const info = JSON.parse(out.stdout.trim().split('\n').pop());
    // alice is in presence-room-42 (members of earlier cases may still be leaving).
    check(info.occupied === true && info.user_count >= 1, `${name} printed ${out.stdout.trim()}`);
  });
}

// ---------------------------------------------------------------- Laravel Echo presence shows member ids

test('laravel-echo: with examples/laravel-echo/policies, Echo.join(\'chat.42\') members carry their ids', async (t) => {
  const echoFor = (user) => {
    const echo = new Echo({
      ...channelgateEchoOptions({ key: APP_KEY, wsHost: '127.0.0.1', wsPort: Number(SOCKUDO_PORT), forceTLS: false, gatewayUrl: GATEWAY, sessionJwt: token(user) }),
      Pusher,
    });
    t.cleanup(() => echo.disconnect());
    return echo;
  };
  const alice = echoFor('alice');
  let onJoining;
  const joining = within(5000, new Promise((resolve) => (onJoining = resolve)), "alice's joining() for bob");
  const here = await within(
    5000,
    new Promise((resolve) => alice.join('chat.42').here(resolve).joining(onJoining)),
    "Echo.join('chat.42').here",
  );
  check(same(here, [{ id: 'alice', name: 'Alice' }]), `here() gave ${show(here)}`);
  echoFor('bob').join('chat.42');
  const member = await joining;
  check(same(member, { id: 'bob', name: 'Bob' }), `joining() gave ${show(member)}`);
});

process.exitCode = await run();
if (hooks) await hooks.close();
setTimeout(() => process.exit(process.exitCode), 200).unref();
