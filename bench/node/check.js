// Checks a server's answers for one scenario before it is loaded: the
// status, and every `auth` recomputed here as
//   key:hex(HMAC-SHA256(secret, socket_id:channel[:channel_data]))
// with presence `channel_data` = {"user_id":sub,"user_info":{"name":name}}
// from the token's own claims.
//
// Usage: node check.js URL MODE TOKEN_FILE PUSHER_KEY PUSHER_SECRET
// MODE as in bench/wrk/auth.lua. Prints `ok: ...` or `FAIL: ...` (exit 1).
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");

const [url, mode, tokenFile, appKey, secret] = process.argv.slice(2);

const lines = [];
{
  // The first three tokens are enough; the file may be large.
  const fd = fs.openSync(tokenFile, "r");
  const buf = Buffer.alloc(16384);
  const n = fs.readSync(fd, buf, 0, buf.length, 0);
  fs.closeSync(fd);
  lines.push(...buf.subarray(0, n).toString().split("\n").slice(0, 3));
}
const parse = (line) => {
  const [token, channels] = line.split("\t");
  const claims = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
  return { token, channels: channels.split(","), claims };
};
const [first, second] = lines.map(parse);

function post(token, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: "POST",
        headers: {
          Authorization: `Bearer ${token}`,
          "Content-Type": "application/x-www-form-urlencoded",
          "Content-Length": Buffer.byteLength(body),
        },
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const failures = [];
const fail = (what) => failures.push(what);

function expectAuth(what, answer, socketId, channel, claims) {
  if (!answer || typeof answer.auth !== "string") return fail(`${what}: no auth in ${JSON.stringify(answer)}`);
  let message = `${socketId}:${channel}`;
  if (channel.startsWith("presence-")) {
    const expected = JSON.stringify({ user_id: claims.sub, user_info: { name: claims.name } });
    if (answer.channel_data !== expected) {
      return fail(`${what}: channel_data ${answer.channel_data} is not ${expected}`);
    }
    message += `:${answer.channel_data}`;
  } else if (answer.channel_data !== undefined) {
    return fail(`${what}: unexpected channel_data`);
  }
  const hmac = crypto.createHmac("sha256", secret).update(message).digest("hex");
  if (answer.auth !== `${appKey}:${hmac}`) fail(`${what}: auth ${answer.auth} is not ${appKey}:${hmac}`);
}

async function single(channel, token = first, status = 200) {
  const socketId = "123456.7654321";
  const res = await post(token.token, `socket_id=${socketId}&channel_name=${channel}`);
  if (res.status !== status) return fail(`${channel}: status ${res.status}, expected ${status}: ${res.body}`);
  if (status === 200) expectAuth(channel, JSON.parse(res.body), socketId, channel, token.claims);
}

async function main() {
  if (mode === "single") await single(first.channels[0]);
  else if (mode === "presence") await single(first.channels[1]);
  else if (mode === "page") for (const c of first.channels) await single(c);
  else if (mode === "deny10") {
    await single(first.channels[0]);
    await single(first.channels[0], second, 403);
  } else if (mode === "batch") {
    const socketId = "123456.7654321";
    const fields = first.channels.map((c, i) => `channel_name%5B${i}%5D=${c}`);
    const res = await post(first.token, `socket_id=${socketId}&${fields.join("&")}`);
    if (res.status !== 200) fail(`batch: status ${res.status}: ${res.body}`);
    else {
      const body = JSON.parse(res.body);
      for (const c of first.channels) expectAuth(`batch ${c}`, body[c], socketId, c, first.claims);
      if (Object.keys(body).length !== first.channels.length) fail("batch: extra entries");
    }
  } else throw new Error(`unknown mode ${mode}`);
  if (failures.length > 0) {
    console.log(`FAIL: ${failures.join("; ")}`);
    process.exit(1);
  }
  console.log(`ok: ${mode}`);
}

main().catch((e) => {
  console.log(`FAIL: ${e.message}`);
  process.exit(1);
});
