// resources/js/echo.js — Laravel Echo with channelgate as the authorization
// endpoint instead of Laravel's /broadcasting/auth (Vite; Sockudo or Soketi
// via VITE_PUSHER_HOST/PORT, or Pusher Channels with those left out).
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
import { channelgateEchoOptions } from './echo-options.js';

window.Pusher = Pusher;

window.Echo = new Echo(
  channelgateEchoOptions({
    key: import.meta.env.VITE_PUSHER_APP_KEY,
    wsHost: import.meta.env.VITE_PUSHER_HOST,
    wsPort: Number(import.meta.env.VITE_PUSHER_PORT ?? 443),
    forceTLS: (import.meta.env.VITE_PUSHER_SCHEME ?? 'https') === 'https',
    gatewayUrl: 'https://auth.example.com', // channelgate
    // The app's session JWT, e.g. rendered into the page by the Laravel view.
    sessionJwt: document.querySelector('meta[name="session-jwt"]')?.content,
  }),
);

// Echo prefixes the names: private('user-1') is `private-user-1`, join('room-42')
// is `presence-room-42`, encryptedPrivate('team-acme') is
// `private-encrypted-team-acme` — the names channelgate's policies match.
const userId = document.querySelector('meta[name="user-id"]')?.content;

window.Echo.private(`user-${userId}`)
  // A leading dot: the event name as broadcast, without Echo's App.Events namespace.
  .listen('.notify', (e) => console.log('notification', e))
  .error((e) => console.warn('refused', e.status)); // 401: log in again; 403: not allowed

window.Echo.join('room-42')
  .here((members) => console.log('here', members)) // each member's info is the policy's user_info
  .joining((member) => console.log('joining', member))
  .leaving((member) => console.log('leaving', member));
