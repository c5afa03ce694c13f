// The page: sign in with the app (a cookie session), then subscribe with
// pusher-js. Authorization goes to /pusher/auth on this origin, which the app
// forwards to channelgate with the cookie.
'use strict';

const log = (text) => {
  const li = document.createElement('li');
  li.textContent = text;
  document.getElementById('log').prepend(li);
};

let pusher = null;

async function connect() {
  const settings = await (await fetch('/config.json')).json();
  if (pusher) pusher.disconnect();
  pusher = new Pusher(settings.key, {
    cluster: 'mt1',
    wsHost: settings.wsHost || location.hostname,
    wsPort: settings.wsPort,
    forceTLS: settings.forceTLS,
    enabledTransports: ['ws', 'wss'],
    channelAuthorization: { endpoint: '/pusher/auth', transport: 'ajax' },
  });
}

document.getElementById('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  const user = new FormData(e.target).get('user');
  const r = await fetch('/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user }),
  });
  document.getElementById('who').textContent = r.ok ? `signed in as ${user}` : `sign-in failed (${r.status})`;
  if (r.ok) await connect();
});

for (const button of document.querySelectorAll('button[data-channel]')) {
  button.addEventListener('click', () => {
    if (!pusher) return log('sign in first');
    const name = button.dataset.channel;
    pusher.unsubscribe(name);
    const channel = pusher.subscribe(name);
    channel.bind('pusher:subscription_succeeded', (data) => {
      const members = data && data.count !== undefined ? ` (${data.count} members)` : '';
      log(`${name}: joined${members}`);
    });
    channel.bind('pusher:subscription_error', (e) => log(`${name}: refused (${e.status}: ${e.error})`));
  });
}
