// pusher-js clients (the Node build, exactly as an app would configure it),
// pointed at Sockudo for the WebSocket and at channelgate for authorization.
import Pusher from 'pusher-js';
import { Failure, within } from './harness.mjs';

if (process.env.E2E_DEBUG) Pusher.logToConsole = true;

/** Connection settings for a local Sockudo and a channelgate base URL. */
export function settings({ appKey, sockudoPort, gatewayUrl }) {
  return { appKey, sockudoPort: Number(sockudoPort), gatewayUrl };
}

/**
 * A pusher-js client. `token` goes in the `Authorization` header (or, with
 * `tokenIn: 'params'`, in the form body); `customHandler` replaces the
 * authorization request entirely. Disconnected by the case's cleanup.
 */
export class Client {
  constructor(t, s, { token, tokenIn = 'headers', customHandler } = {}) {
    const auth = { transport: 'ajax' };
    if (token && tokenIn === 'headers') auth.headers = { Authorization: `Bearer ${token}` };
    if (token && tokenIn === 'params') auth.params = { token };
    this.pusher = new Pusher(s.appKey, {
      cluster: 'mt1', // required by the constructor; wsHost wins
      wsHost: '127.0.0.1',
      wsPort: s.sockudoPort,
      forceTLS: false,
      enabledTransports: ['ws'],
      channelAuthorization: customHandler
        ? { customHandler }
        : { ...auth, endpoint: `${s.gatewayUrl}/pusher/auth` },
      userAuthentication: { ...auth, endpoint: `${s.gatewayUrl}/pusher/user-auth` },
    });
    /** Every frame received, in order (`{event, channel, data}`). */
    this.frames = [];
    /** `pusher:error` frames from the server (`{code, message}`). */
    this.serverErrors = [];
    this.pusher.connection.bind('message', (frame) => this.frames.push(frame));
    this.pusher.connection.bind('error', (e) => {
      if (e && e.type === 'PusherError') this.serverErrors.push(e.data);
    });
    t.cleanup(() => this.disconnect());
  }

  /** Waits for the connection; resolves with the socket id. */
  async connected(ms = 5000) {
    const c = this.pusher.connection;
    if (c.state !== 'connected') {
      await within(
        ms,
        new Promise((resolve) => c.bind('connected', resolve)),
        `the WebSocket connection (state ${c.state})`,
      );
    }
    return c.socket_id;
  }

  /**
   * Subscribes and waits for the outcome: `{ok: true, data}` on
   * `pusher:subscription_succeeded`, `{ok: false, status, error}` on
   * `pusher:subscription_error`, `{ok: false, serverError}` on a
   * `pusher:error` frame (Sockudo's answer to a bad signature).
   */
  async subscribe(name, ms = 5000) {
    await this.connected();
    const channel = this.pusher.subscribe(name);
    let onServerError;
    const outcome = await within(
      ms,
      new Promise((resolve) => {
        channel.bind('pusher:subscription_succeeded', (data) => resolve({ ok: true, data }));
        channel.bind('pusher:subscription_error', (e) => resolve({ ok: false, status: e.status, error: e.error }));
        onServerError = (e) => {
          if (e && e.type === 'PusherError') resolve({ ok: false, serverError: e.data });
        };
        this.pusher.connection.bind('error', onServerError);
      }),
      `the outcome of subscribing to ${name}`,
    ).finally(() => this.pusher.connection.unbind('error', onServerError));
    return { channel, ...outcome };
  }

  /** Subscribes and fails the case unless the subscription succeeds. */
  async join(name, ms = 5000) {
    const r = await this.subscribe(name, ms);
    if (!r.ok) throw new Failure(`subscribing to ${name} failed: ${describe(r)}`);
    return r.channel;
  }

  async disconnect() {
    const c = this.pusher.connection;
    if (c.state === 'disconnected' || c.state === 'initialized') return this.pusher.disconnect();
    const done = new Promise((resolve) => c.bind('disconnected', resolve));
    this.pusher.disconnect();
    await within(3000, done, 'the disconnection');
  }
}

/** A readable outcome of `subscribe`. */
export function describe(r) {
  if (r.ok) return 'pusher:subscription_succeeded';
  if (r.serverError) return `pusher:error ${JSON.stringify(r.serverError)}`;
  return `pusher:subscription_error status ${r.status} (${r.error})`;
}

/** Resolves with the data of the next `event` on `bindable` (a channel or `pusher.user`). */
export function nextEvent(bindable, event, ms = 5000, what = event) {
  return within(
    ms,
    new Promise((resolve) => {
      const handler = (data) => {
        bindable.unbind(event, handler);
        resolve(data);
      };
      bindable.bind(event, handler);
    }),
    what,
  );
}
