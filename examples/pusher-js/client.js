// pusher-js with channelgate: the two endpoints, and a session token.
// Works the same with Pusher Channels (set `cluster`, drop wsHost/wsPort) and
// with Sockudo, Soketi or Reverb (wsHost/wsPort as below).
import Pusher from 'pusher-js';

const sessionJwt = await getSessionToken(); // your app's existing session (a JWT)

const pusher = new Pusher('app-key', {
  cluster: 'mt1',                  // required by pusher-js; wsHost/wsPort win when set
  wsHost: 'ws.example.com',        // Sockudo / Soketi / Reverb
  wsPort: 443,
  wssPort: 443,
  forceTLS: true,
  enabledTransports: ['ws', 'wss'],

  // private-, presence- and private-encrypted- channels
  channelAuthorization: {
    endpoint: 'https://auth.example.com/pusher/auth',
    transport: 'ajax',
    // Either a header (channelgate: `token_from: [{ header: Authorization }]`) …
    headers: { Authorization: `Bearer ${sessionJwt}` },
    // … or a form field in the request body (`token_from: [{ form: token }]`):
    // params: { token: sessionJwt },
  },

  // pusher.signin()
  userAuthentication: {
    endpoint: 'https://auth.example.com/pusher/user-auth',
    transport: 'ajax',
    headers: { Authorization: `Bearer ${sessionJwt}` },
  },
});

// A token that changes (refreshed sessions): providers are called for every request.
//   channelAuthorization: { endpoint, headersProvider: () => ({ Authorization: `Bearer ${currentJwt()}` }) }
// Do not combine `headers` and `headersProvider` for the same header: the XHR
// transport joins both values into one ("Bearer A, Bearer B"), which is not a token.

pusher.signin();

const mine = pusher.subscribe('private-user-alice');
mine.bind('pusher:subscription_error', ({ status }) => {
  // 401: the session is missing or expired, log in again; 403: the policy refuses, do not retry.
  console.warn('refused with status', status);
});
mine.bind('notify', (data) => console.log('notification', data));

const room = pusher.subscribe('presence-room-42');
room.bind('pusher:subscription_succeeded', (members) => {
  members.each((m) => console.log(m.id, m.info)); // info = exactly the policy's user_info
});

// Encrypted channels need the build with encryption (`pusher-js/with-encryption`
// in browsers); channelgate returns the per-channel shared_secret.
async function getSessionToken() {
  const res = await fetch('/api/session-token', { credentials: 'same-origin' });
  return (await res.json()).token;
}
