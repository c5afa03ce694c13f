// Starts a server in the background and measures how long it takes to be
// ready: from just before the process is spawned to the first 200 from
// READY_URL, polling every 0.2 ms. Prints `pid=PID ready_ms=MS` and exits,
// leaving the server running (its output goes to LOG).
//
// Usage: node launch.js READY_URL LOG -- COMMAND [ARGS...]
"use strict";

const { spawn } = require("node:child_process");
const fs = require("node:fs");
const http = require("node:http");

const [readyUrl, logFile, dashes, command, ...args] = process.argv.slice(2);
if (dashes !== "--" || !command) {
  console.error("usage: node launch.js READY_URL LOG -- COMMAND [ARGS...]");
  process.exit(2);
}
const TIMEOUT_MS = 20_000;
const agent = new http.Agent({ keepAlive: false });

const log = fs.openSync(logFile, "a");
const started = process.hrtime.bigint();
const child = spawn(command, args, { detached: true, stdio: ["ignore", log, log] });
let exited = null;
child.once("exit", (code, signal) => {
  exited = `exited early (code ${code}, signal ${signal}); see ${logFile}`;
});

function poll() {
  if (exited) {
    console.error(exited);
    process.exit(1);
  }
  const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
  if (elapsedMs > TIMEOUT_MS) {
    console.error(`not ready after ${TIMEOUT_MS} ms; see ${logFile}`);
    process.exit(1);
  }
  const req = http.get(readyUrl, { agent }, (res) => {
    res.resume();
    if (res.statusCode === 200) {
      const readyMs = Number(process.hrtime.bigint() - started) / 1e6;
      console.log(`pid=${child.pid} ready_ms=${readyMs.toFixed(1)}`);
      child.unref();
      process.exit(0);
    } else {
      setTimeout(poll, 0.2);
    }
  });
  req.on("error", () => setTimeout(poll, 0.2));
}
poll();
