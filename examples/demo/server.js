// channelgate demo app: the app's own login, and nothing else Pusher-related.
//
// - POST /login puts a JWT (HS256, signed with SESSION_JWT_SECRET) in an
//   HttpOnly `session` cookie, as an existing web app already does;
// - POST /pusher/auth and /pusher/user-auth are proxied, unchanged, to
//   channelgate, so the browser calls them same-origin and the cookie reaches
//   channelgate (pusher-js never sends cookies cross-origin);
// - the page (public/) uses pusher-js from node_modules, no CDN.
//
// This server never sees the Pusher secret: channelgate holds it.
// Node >= 18, no dependencies besides pusher-js (served to the browser).
'use strict';

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

const config = {
  host: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT || 3000),
  // Where channelgate listens (its channelgate.yaml `listen`).
  gateway: new URL(process.env.CHANNELGATE_URL || 'http://127.0.0.1:8080'),
  // Shared with channelgate's session.jwt (secret, issuer, audience).
  jwtSecret: process.env.SESSION_JWT_SECRET || '',
  issuer: process.env.SESSION_JWT_ISSUER || 'channelgate-demo',
  audience: process.env.SESSION_JWT_AUDIENCE || 'demo',
  sessionSeconds: 3600,
  secureCookie: process.env.COOKIE_SECURE === '1', // set when served over HTTPS
  // Public settings for pusher-js in the page.
  pusher: {
    key: process.env.PUSHER_APP_KEY || 'demo-key',
    wsHost: process.env.PUSHER_WS_HOST || null, // null: the page's own host name
    wsPort: Number(process.env.PUSHER_WS_PORT || 6001),
    forceTLS: process.env.PUSHER_FORCE_TLS === '1',
  },
};

if (Buffer.byteLength(config.jwtSecret) < 32) {
  console.error('demo: SESSION_JWT_SECRET must be set to the secret channelgate verifies sessions with (at least 32 bytes)');
  process.exit(78);
}

const pusherJs = require.resolve('pusher-js/dist/web/pusher.min.js');
const files = {
  '/': [path.join(__dirname, 'public', 'index.html'), 'text/html; charset=utf-8'],
  '/app.js': [path.join(__dirname, 'public', 'app.js'), 'text/javascript; charset=utf-8'],
  '/style.css': [path.join(__dirname, 'public', 'style.css'), 'text/css; charset=utf-8'],
  '/vendor/pusher.min.js': [pusherJs, 'text/javascript; charset=utf-8'],
};
const proxied = new Set(['/pusher/auth', '/pusher/user-auth']);
const MAX_BODY = 16 * 1024;

// ------------------------------------------------------------------ sessions

const b64url = (data) => Buffer.from(data).toString('base64url');
const hmac = (data) => crypto.createHmac('sha256', config.jwtSecret).update(data).digest('base64url');

function mintSession(user) {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: config.issuer,
    aud: config.audience,
    sub: user.id,
    name: user.name,
    rooms: ['lobby'], // what this user may join; the policy checks it
    iat: now,
    exp: now + config.sessionSeconds,
  };
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  return `${head}.${body}.${hmac(`${head}.${body}`)}`;
}

/** The user of a valid session cookie, or null. */
function sessionUser(req) {
  const cookie = (req.headers.cookie || '').split(';').map((c) => c.trim()).find((c) => c.startsWith('session='));
  if (!cookie) return null;
  const [head, body, sig] = cookie.slice('session='.length).split('.');
  if (!head || !body || !sig) return null;
  const expected = Buffer.from(hmac(`${head}.${body}`));
  const given = Buffer.from(sig);
  if (expected.length !== given.length || !crypto.timingSafeEqual(expected, given)) return null;
  try {
    const claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    if (typeof claims.exp !== 'number' || claims.exp * 1000 < Date.now()) return null;
    return { id: claims.sub, name: claims.name };
  } catch {
    return null;
  }
}

function sessionCookie(value, maxAge) {
  const secure = config.secureCookie ? '; Secure' : '';
  return `session=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${secure}`;
}

// ------------------------------------------------------------------ handlers

function send(res, status, body, headers = {}) {
  const isJson = typeof body !== 'string';
  const text = isJson ? JSON.stringify(body) : body;
  res.writeHead(status, {
    'Content-Type': isJson ? 'application/json' : 'text/plain; charset=utf-8',
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new Error('body too large'));
        req.destroy();
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function login(req, res) {
  const raw = (await readBody(req)).toString('utf8');
  const type = req.headers['content-type'] || '';
  const fields = type.startsWith('application/json') ? JSON.parse(raw || '{}') : Object.fromEntries(new URLSearchParams(raw));
  const name = String(fields.name || '').trim();
  const id = name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  if (!id || name.length > 40) return send(res, 400, { error: 'a name of 1 to 40 characters, with letters or digits' });
  // A real app checks a password here. The demo trusts the name.
  const user = { id, name };
  send(res, 200, { user }, { 'Set-Cookie': sessionCookie(mintSession(user), config.sessionSeconds) });
}

/** Same-origin reverse proxy to channelgate: the browser's cookie and Origin go along. */
async function proxy(req, res) {
  const body = await readBody(req);
  const headers = { 'content-length': String(body.length), 'x-forwarded-for': req.socket.remoteAddress || '' };
  for (const name of ['content-type', 'cookie', 'authorization', 'origin', 'user-agent']) {
    if (req.headers[name]) headers[name] = req.headers[name];
  }
  headers['x-forwarded-host'] = req.headers.host || '';
  headers['x-forwarded-proto'] = config.secureCookie ? 'https' : 'http';
  const upstream = http.request(
    { host: config.gateway.hostname, port: config.gateway.port || 80, method: req.method, path: req.url, headers, timeout: 5000 },
    (up) => {
      const keep = {};
      for (const name of ['content-type', 'www-authenticate', 'retry-after', 'allow']) {
        if (up.headers[name]) keep[name] = up.headers[name];
      }
      res.writeHead(up.statusCode, { ...keep, 'Cache-Control': 'no-store' });
      up.pipe(res);
    },
  );
  upstream.on('timeout', () => upstream.destroy(new Error('timeout')));
  upstream.on('error', (e) => {
    console.error(`demo: channelgate at ${config.gateway.origin} failed: ${e.message}`);
    if (!res.headersSent) send(res, 502, { error: 'the authorization gateway is unreachable', reason: 'bad_gateway' });
  });
  upstream.end(body);
}

async function route(req, res) {
  const url = new URL(req.url, 'http://demo.invalid');
  if (req.method === 'GET' && files[url.pathname]) {
    const [file, type] = files[url.pathname];
    res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-cache' });
    return fs.createReadStream(file).pipe(res);
  }
  if (req.method === 'GET' && url.pathname === '/config.json') return send(res, 200, config.pusher);
  if (req.method === 'GET' && url.pathname === '/healthz') return send(res, 200, 'ok');
  if (req.method === 'GET' && url.pathname === '/api/me') return send(res, 200, { user: sessionUser(req) });
  if (req.method === 'POST' && url.pathname === '/login') return login(req, res);
  if (req.method === 'POST' && url.pathname === '/logout') {
    return send(res, 200, { user: null }, { 'Set-Cookie': sessionCookie('', 0) });
  }
  if (req.method === 'POST' && proxied.has(url.pathname)) return proxy(req, res);
  send(res, 404, { error: 'not found' });
}

const server = http.createServer((req, res) => {
  route(req, res).catch((e) => {
    if (!res.headersSent) send(res, 400, { error: e.message });
    else res.destroy();
  });
});
server.listen(config.port, config.host, () => {
  const { address, port } = server.address();
  console.log(`demo: listening on http://${address}:${port} (channelgate at ${config.gateway.origin})`);
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref(); // whatever is still open
  });
}
