// Mints the benchmark's session tokens: one line per token,
//   <jwt> TAB <ch0>,<ch1>,...,<ch9>
// where the channels are the ones that token's page joins:
//   ch0 private-user-<sub>, ch1 presence-room-<room>,
//   ch2 private-org-<org>-announcements, ch3..ch9 private-doc-<doc>.
// The claims look like an identity provider's (iss, aud, sub, name, email,
// org, rooms, docs, iat, exp). Every token is distinct, so a token the
// gateway has not seen costs a real signature verification.
//
// Usage: node tokens.js --alg HS256|RS256|ES256 --key SECRET_OR_PEM_FILE
//          --count N --out FILE --iss ISS --aud AUD [--ttl SECONDS]
// Signing runs on every core (worker threads); RS256 is the slow one
// (about 1 ms per token).
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const { Worker, isMainThread, parentPort, workerData } = require("node:worker_threads");

const b64 = (buf) => Buffer.from(buf).toString("base64url");

function mint({ alg, key, iss, aud, ttl, from, to }, emit) {
  const signingKey = alg === "HS256" ? Buffer.from(key) : crypto.createPrivateKey(fs.readFileSync(key));
  const header = b64(JSON.stringify({ alg, typ: "JWT", kid: "bench-1" }));
  const now = Math.floor(Date.now() / 1000);
  const lines = [];
  for (let i = from; i < to; i++) {
    const sub = `user-${String(i).padStart(7, "0")}`;
    const org = `org${i % 997}`;
    const rooms = [String(i % 5000), String((i * 7) % 5000)];
    const docs = Array.from({ length: 7 }, (_, k) => String(100000 + ((i * 13 + k * 101) % 900000)));
    const claims = {
      iss,
      aud,
      sub,
      name: `User ${i}`,
      email: `${sub}@example.com`,
      org,
      rooms,
      docs,
      iat: now,
      exp: now + ttl,
    };
    const input = `${header}.${b64(JSON.stringify(claims))}`;
    let sig;
    if (alg === "HS256") sig = crypto.createHmac("sha256", signingKey).update(input).digest();
    else if (alg === "RS256") sig = crypto.sign("sha256", Buffer.from(input), signingKey);
    else sig = crypto.sign("sha256", Buffer.from(input), { key: signingKey, dsaEncoding: "ieee-p1363" });
    const channels = [
      `private-user-${sub}`,
      `presence-room-${rooms[0]}`,
      `private-org-${org}-announcements`,
      ...docs.map((d) => `private-doc-${d}`),
    ];
    lines.push(`${input}.${b64(sig)}\t${channels.join(",")}\n`);
    if (lines.length === 5000) emit(lines.splice(0).join(""));
  }
  if (lines.length > 0) emit(lines.join(""));
}

if (!isMainThread) {
  mint(workerData, (chunk) => parentPort.postMessage(chunk));
} else {
  const args = {};
  for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
  for (const required of ["alg", "key", "count", "out", "iss", "aud"]) {
    if (args[required] === undefined) {
      console.error(`tokens.js: --${required} is required`);
      process.exit(2);
    }
  }
  const count = Number(args.count);
  const ttl = Number(args.ttl || 7 * 24 * 3600);
  const workers = Math.max(1, Math.min(os.cpus().length, Math.ceil(count / 2000)));
  const per = Math.ceil(count / workers);
  const fd = fs.openSync(args.out, "w");
  const jobs = [];
  for (let w = 0; w < workers; w++) {
    const from = w * per;
    const to = Math.min(count, from + per);
    jobs.push(
      new Promise((resolve, reject) => {
        const worker = new Worker(__filename, {
          workerData: { alg: args.alg, key: args.key, iss: args.iss, aud: args.aud, ttl, from, to },
        });
        worker.on("message", (chunk) => fs.writeSync(fd, chunk));
        worker.once("exit", resolve);
        worker.once("error", reject);
      }),
    );
  }
  Promise.all(jobs).then(() => fs.closeSync(fd));
}
