// The demo page: pusher-js configured for same-origin authorization.
// The session is an HttpOnly cookie, so this code never sees the token:
// the browser sends the cookie with /pusher/auth, which the app proxies to
// channelgate (`session.token_from: [{cookie: session}]`).
'use strict';

const ROOM = 'presence-room-lobby';
const $ = (id) => document.getElementById(id);
let pusher = null;

async function api(path, options = {}) {
  const res = await fetch(path, { credentials: 'same-origin', ...options });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}

function show(section) {
  $('login').hidden = section !== 'login';
  $('room').hidden = section !== 'room';
}

function renderMembers(channel) {
  const list = $('members');
  list.replaceChildren();
  const me = channel.members.me;
  channel.members.each((member) => {
    const li = document.createElement('li');
    li.dataset.userId = member.id;
    li.textContent = (member.info && member.info.name) || member.id;
    if (me && member.id === me.id) li.classList.add('me');
    list.append(li);
  });
  $('member-count').textContent = String(channel.members.count);
}

function addMessage(from, text, mine) {
  const li = document.createElement('li');
  if (mine) li.classList.add('mine');
  const who = document.createElement('strong');
  who.textContent = `${from}: `;
  li.append(who, document.createTextNode(text));
  $('messages').append(li);
}

async function start(user) {
  show('room');
  $('me').textContent = `${user.name} (${user.id})`;
  const cfg = await api('/config.json');
  pusher = new Pusher(cfg.key, {
    cluster: 'mt1', // required by pusher-js; wsHost below wins
    wsHost: cfg.wsHost || location.hostname,
    wsPort: cfg.wsPort,
    wssPort: cfg.wsPort,
    forceTLS: cfg.forceTLS,
    enabledTransports: ['ws', 'wss'],
    // Same origin: the HttpOnly session cookie goes along; no token in JS.
    channelAuthorization: { endpoint: '/pusher/auth', transport: 'ajax' },
    userAuthentication: { endpoint: '/pusher/user-auth', transport: 'ajax' },
  });
  pusher.connection.bind('state_change', ({ current }) => { $('connection').textContent = current; });

  pusher.signin();
  pusher.user.bind('pusher:signin_error', (e) => { $('signin').textContent = `refused (${e.status || e.error})`; });
  pusher.user.signinDonePromise.then(() => {
    $('signin').textContent = `signed in as ${pusher.user.user_data.id}`;
  });

  const channel = pusher.subscribe(ROOM);
  $('subscription').textContent = `joining ${ROOM}…`;
  channel.bind('pusher:subscription_succeeded', () => {
    $('subscription').textContent = `joined ${ROOM}`;
    renderMembers(channel);
  });
  channel.bind('pusher:subscription_error', (e) => {
    $('subscription').textContent = `refused: status ${e.status}`;
  });
  channel.bind('pusher:member_added', () => renderMembers(channel));
  channel.bind('pusher:member_removed', () => renderMembers(channel));
  // Client events go straight from member to member through Sockudo.
  channel.bind('client-message', (data) => addMessage(data.from, data.text, false));
  $('message-form').onsubmit = (event) => {
    event.preventDefault();
    const text = $('message').value.trim();
    if (!text || !channel.subscribed) return;
    channel.trigger('client-message', { from: user.name, text });
    addMessage(user.name, text, true);
    $('message').value = '';
  };
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('login-error').textContent = '';
  try {
    const { user } = await api('/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: $('name').value }),
    });
    await start(user);
  } catch (e) {
    $('login-error').textContent = e.message;
  }
});

$('logout').addEventListener('click', async () => {
  if (pusher) pusher.disconnect();
  pusher = null;
  await api('/logout', { method: 'POST' });
  $('members').replaceChildren();
  $('messages').replaceChildren();
  show('login');
});

api('/api/me')
  .then(({ user }) => (user ? start(user) : show('login')))
  .catch(() => show('login'));
