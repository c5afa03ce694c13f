// The endpoint people write instead of channelgate: Node's `http`, the
// official `pusher` SDK and `jsonwebtoken`, with the same rules as
// bench/configs/policies/bench.yaml written out by hand. It is as good as
// such endpoints get: the key is parsed once into a KeyObject (pass
// BENCH_NODE_KEY_MODE=string to hand jsonwebtoken the PEM or the secret
// string on every call, as most copies of the SDK's README do), and it
// answers batches (`channel_name[N]`).
//
// Environment: PORT, PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET, JWT_ALG
// (HS256, RS256, ES256), JWT_SECRET (HS256) or JWT_PUBLIC_KEY_FILE,
// JWT_ISSUER, JWT_AUDIENCE.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");
const querystring = require("node:querystring");

const Pusher = require("pusher");
const jwt = require("jsonwebtoken");

const env = (name) => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};

const pusher = new Pusher({
  appId: env("PUSHER_APP_ID"),
  key: env("PUSHER_KEY"),
  secret: env("PUSHER_SECRET"),
  cluster: "mt1",
  useTLS: true,
});

const alg = env("JWT_ALG");
const stringKeys = process.env.BENCH_NODE_KEY_MODE === "string";
let key;
if (alg === "HS256") {
  key = stringKeys ? env("JWT_SECRET") : crypto.createSecretKey(Buffer.from(env("JWT_SECRET")));
} else {
  const pem = fs.readFileSync(env("JWT_PUBLIC_KEY_FILE"), "utf8");
  key = stringKeys ? pem : crypto.createPublicKey(pem);
}
const verifyOptions = { algorithms: [alg], issuer: env("JWT_ISSUER"), audience: env("JWT_AUDIENCE") };

// The policy, by hand. Returns presence data for presence channels, true
// for an allowed private channel, false for a refusal.
function decide(claims, channel) {
  let m;
  if ((m = /^private-user-(.+)$/.exec(channel))) return m[1] === claims.sub;
  if ((m = /^private-org-([a-z0-9]+)-announcements$/.exec(channel))) return claims.org === m[1];
  if ((m = /^private-doc-([0-9]+)$/.exec(channel))) return Array.isArray(claims.docs) && claims.docs.includes(m[1]);
  if ((m = /^presence-room-([0-9]+)$/.exec(channel))) {
    if (!Array.isArray(claims.rooms) || !claims.rooms.includes(m[1])) return false;
    return { user_id: claims.sub, user_info: { name: claims.name } };
  }
  return false;
}

function authorize(socketId, channel, claims) {
  const d = decide(claims, channel);
  if (d === false) return null;
  return pusher.authorizeChannel(socketId, channel, d === true ? undefined : d);
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store" });
  res.end(text);
}

const server = http.createServer((req, res) => {
  if (req.method === "GET" && (req.url === "/readyz" || req.url === "/healthz")) {
    return send(res, 200, { status: "ready" });
  }
  if (req.method !== "POST" || req.url !== "/pusher/auth") return send(res, 404, { error: "not found" });
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const form = querystring.parse(Buffer.concat(chunks).toString());
    const header = req.headers.authorization || "";
    const token = header.startsWith("Bearer ") ? header.slice(7) : form.token;
    let claims;
    try {
      claims = jwt.verify(token, key, verifyOptions);
    } catch (e) {
      return send(res, 401, { error: "invalid token" });
    }
    const socketId = form.socket_id;
    if (typeof socketId !== "string" || !/^\d+\.\d+$/.test(socketId)) {
      return send(res, 400, { error: "invalid socket_id" });
    }
    if (typeof form.channel_name === "string") {
      const auth = authorize(socketId, form.channel_name, claims);
      return auth ? send(res, 200, auth) : send(res, 403, { error: "forbidden" });
    }
    const out = {};
    for (let i = 0; typeof form[`channel_name[${i}]`] === "string"; i++) {
      const channel = form[`channel_name[${i}]`];
      out[channel] = authorize(socketId, channel, claims) || { status: 403, error: "forbidden" };
    }
    if (Object.keys(out).length === 0) return send(res, 400, { error: "channel_name is missing" });
    return send(res, 200, out);
  });
});

server.keepAliveTimeout = 65_000;
server.listen(Number(env("PORT")), "127.0.0.1", () => {
  console.log(`node endpoint listening on http://127.0.0.1:${server.address().port}`);
});
