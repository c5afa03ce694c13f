// The page: sign in with the app (a cookie session), then subscribe with
// pusher-js. Authorization goes to /pusher/auth on this origin, which the app
// forwards to channelgate with the cookie.
'use strict';

let pusher = null;

/** Adds a line to the log; `data-channel`/`data-outcome` let tests read it. */
function log(channel, outcome, text) {
  const li = document.createElement('li');
  li.dataset.channel = channel;
  li.dataset.outcome = outcome;
  li.textContent = `${channel}: ${text}`;
  document.getElementById('log').prepend(li);
}

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
  if (r.ok) await connect();
  const who = document.getElementById('who');
  who.textContent = r.ok ? `signed in as ${user}` : `sign-in failed (${r.status})`;
  who.dataset.user = r.ok ? user : '';
});

for (const button of document.querySelectorAll('button[data-channel]')) {
  button.addEventListener('click', () => {
    const name = button.dataset.channel;
    if (!pusher) return log(name, 'error', 'sign in first');
    pusher.unsubscribe(name);
    const channel = pusher.subscribe(name);
    channel.bind('pusher:subscription_succeeded', (data) => {
      if (data && data.members) {
        const members = Object.entries(data.members).map(([id, info]) => `${id} ${JSON.stringify(info)}`);
        log(name, 'joined', `joined; members: ${members.join(', ')}`);
      } else {
        log(name, 'joined', 'joined');
      }
    });
    channel.bind('pusher:subscription_error', (e) => log(name, 'refused', `refused (${e.status}: ${e.error})`));
  });
}
