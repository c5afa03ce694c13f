// An Express app with an opaque cookie session (express-session), whose
// memberships live in its own PostgreSQL database — the kind of app that
// cannot put every room a user may join into a token. channelgate:
//   - asks GET /api/me who the `app_session` cookie belongs to (session
//     introspection: 200 + JSON = claims, 401 = no session);
//   - reads room memberships from PostgreSQL (a read-only role) and team
//     memberships from Redis itself, in its policy;
//   - asks POST /pusher/decide whether a user may see a document (a hook).
// The page calls /pusher/auth on this origin; this server forwards it,
// cookie and Origin included, to channelgate. It never sees the Pusher secret.
'use strict';

const crypto = require('node:crypto');
const path = require('node:path');
const express = require('express');
const session = require('express-session');
const { Pool } = require('pg');

const config = {
  host: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT || 3000),
  gateway: process.env.CHANNELGATE_URL || 'http://127.0.0.1:8080',
  databaseUrl: process.env.APP_DATABASE_URL || 'postgres://app@127.0.0.1:5432/app',
  sessionSecret: process.env.SESSION_SECRET || '',
  // channelgate sends it with each hook call (channelgate.yaml: hook.headers).
  hookToken: process.env.HOOK_TOKEN || '',
  // How long channelgate may reuse an /api/me answer (its `ttl` is the upper bound).
  meMaxAge: Number(process.env.ME_MAX_AGE || 30),
  pusher: {
    key: process.env.PUSHER_APP_KEY || 'members-key',
    wsHost: process.env.PUSHER_WS_HOST || null,
    wsPort: Number(process.env.PUSHER_WS_PORT || 6001),
    forceTLS: process.env.PUSHER_FORCE_TLS === '1',
  },
};

for (const [name, value] of [['SESSION_SECRET', config.sessionSecret], ['HOOK_TOKEN', config.hookToken]]) {
  if (Buffer.byteLength(value) < 32) {
    console.error(`memberships example: ${name} must be set (at least 32 bytes)`);
    process.exit(78);
  }
}

const db = new Pool({ connectionString: config.databaseUrl, max: 4 });
const app = express();
app.disable('x-powered-by');
app.use(
  session({
    name: 'app_session',
    secret: config.sessionSecret,
    resave: false,
    saveUninitialized: false,
    cookie: { httpOnly: true, sameSite: 'lax', secure: process.env.COOKIE_SECURE === '1' },
  }),
);

const json = express.json({ limit: '16kb' });
const signedIn = (req, res, next) =>
  req.session.user ? next() : res.status(401).json({ message: 'Unauthenticated.' });

// ------------------------------------------------------------ the app's own routes

app.post('/login', json, async (req, res, next) => {
  try {
    const { rows } = await db.query('SELECT id, name FROM users WHERE id = $1', [String(req.body.user || '')]);
    if (rows.length === 0) return res.status(401).json({ message: 'Unknown user.' });
    // A new session id at sign-in (session fixation).
    req.session.regenerate((err) => {
      if (err) return next(err);
      req.session.user = rows[0];
      res.status(204).end();
    });
  } catch (e) {
    next(e);
  }
});

app.post('/logout', (req, res) => req.session.destroy(() => res.status(204).end()));

app.post('/rooms/:room/join', signedIn, async (req, res, next) => {
  try {
    await db.query(
      `INSERT INTO room_members (room_id, user_id) VALUES ($1, $2)
       ON CONFLICT (room_id, user_id) DO NOTHING`,
      [Number(req.params.room), req.session.user.id],
    );
    res.status(204).end();
  } catch (e) {
    next(e);
  }
});

app.post('/rooms/:room/leave', signedIn, async (req, res, next) => {
  try {
    await db.query('DELETE FROM room_members WHERE room_id = $1 AND user_id = $2', [
      Number(req.params.room),
      req.session.user.id,
    ]);
    res.status(204).end();
  } catch (e) {
    next(e);
  }
});

// ------------------------------------------------------------ what channelgate calls

// Session introspection: who is this cookie? The claims are `token.*` in policies.
app.get('/api/me', signedIn, (req, res) => {
  res.set('Cache-Control', `private, max-age=${config.meMaxAge}`);
  res.json({ sub: req.session.user.id, name: req.session.user.name });
});

// The decision hook of rule `docs`: {claims, channel, captures, socket_id} → {allow, reason, user_info}.
app.post('/pusher/decide', json, async (req, res, next) => {
  const given = Buffer.from(req.get('authorization') || '');
  const expected = Buffer.from(`Bearer ${config.hookToken}`);
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
    return res.status(401).json({ message: 'Not channelgate.' });
  }
  try {
    const { claims = {}, captures = {} } = req.body || {};
    const { rows } = await db.query('SELECT 1 FROM doc_viewers WHERE doc_id = $1 AND user_id = $2', [
      Number(captures.doc),
      String(claims.sub),
    ]);
    if (rows.length === 0) return res.json({ allow: false, reason: 'not_a_viewer' });
    res.json({ allow: true, user_info: { name: claims.name } });
  } catch (e) {
    next(e);
  }
});

// pusher-js calls these on the page's origin; channelgate answers them.
app.post(['/pusher/auth', '/pusher/user-auth'], express.raw({ type: () => true, limit: '16kb' }), async (req, res) => {
  const headers = { 'content-type': req.get('content-type') || 'application/x-www-form-urlencoded' };
  for (const name of ['cookie', 'origin', 'referer']) if (req.get(name)) headers[name] = req.get(name);
  try {
    const answer = await fetch(new URL(req.path, config.gateway), {
      method: 'POST',
      headers,
      body: req.body,
      signal: AbortSignal.timeout(5000),
    });
    res.status(answer.status).type(answer.headers.get('content-type') || 'application/json');
    res.send(Buffer.from(await answer.arrayBuffer()));
  } catch {
    res.status(502).json({ error: 'channelgate is unreachable', reason: 'gateway_unreachable' });
  }
});

// ------------------------------------------------------------ the page

app.get('/config.json', (req, res) => res.json(config.pusher));
app.get('/vendor/pusher.min.js', (req, res) => res.sendFile(require.resolve('pusher-js/dist/web/pusher.min.js')));
app.use(express.static(path.join(__dirname, 'public'), { index: 'index.html' }));

app.use((err, req, res, next) => {
  console.error(`memberships example: ${req.method} ${req.path}: ${err.message}`);
  if (res.headersSent) return next(err);
  res.status(500).json({ message: 'Server error.' });
});

const server = app.listen(config.port, config.host, () => {
  const { address, port } = server.address();
  console.log(`memberships example on http://${address}:${port} (channelgate at ${config.gateway})`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => db.end().then(() => process.exit(0))));
}
