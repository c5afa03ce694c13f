// The app's webhook endpoint, as a tiny Node HTTP server on 127.0.0.1: it
// records every POST (path, lower-case headers, raw body bytes) and answers
// 200. channelgate's `webhooks.forward_to` points at /hooks; Sockudo also
// sends a reference copy straight to /direct (tests/e2e/sockudo.toml).
import { createServer } from 'node:http';
import { within } from './harness.mjs';

/** Starts the receiver on `port`; resolves once it listens. */
export async function startReceiver(port) {
  const received = [];
  const waiters = new Set();
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const hook = { method: req.method, path: req.url, headers: req.headers, body: Buffer.concat(chunks) };
      received.push(hook);
      for (const w of waiters) w();
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(port), '127.0.0.1', resolve);
  });
  return {
    received,
    /** Resolves with the first recorded hook (already there or to come) for which `pred` holds. */
    waitFor(pred, ms, what) {
      let check;
      return within(
        ms,
        new Promise((resolve) => {
          check = () => {
            const hit = received.find(pred);
            if (hit) resolve(hit);
          };
          waiters.add(check);
          check();
        }),
        what,
      ).finally(() => waiters.delete(check));
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The events of a webhook body, or [] when it is not Pusher's JSON shape. */
export function hookEvents(hook) {
  try {
    const doc = JSON.parse(hook.body.toString('utf8'));
    return Array.isArray(doc.events) ? doc.events : [];
  } catch {
    return [];
  }
}
