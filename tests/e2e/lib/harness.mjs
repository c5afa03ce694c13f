// A tiny test runner: each case prints `PASS name` or `FAIL name: reason`,
// and the last line is `N passed, M failed` (the exit code is 1 on any failure).
// Cases run one after another, each bounded by a timeout; whatever a case
// registers with `cleanup` (clients, browsers) is released even when it fails.

const cases = [];

/**
 * Registers a case; `fn(t)` gets `t.cleanup(fn)` and `t.note(text)`. When a
 * `precondition` fails, every later case fails as "not run".
 */
export function test(name, fn, { timeoutMs = 15000, precondition = false } = {}) {
  cases.push({ name, fn, timeoutMs, precondition });
}

export class Failure extends Error {}

/** Throws a failure with `reason` unless `condition` holds. */
export function check(condition, reason) {
  if (!condition) throw new Failure(reason);
}

/** Deep equality for JSON-like values (key order ignored). */
export function same(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return same(ka.join('\u0000'), kb.join('\u0000')) && ka.every((k) => same(a[k], b[k]));
}

export const show = (v) => JSON.stringify(v);

/** Resolves with the value of `promise`, or rejects after `ms` with `what`. */
export function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs every registered case in order, prints the summary, returns the exit status. */
export async function run() {
  let passed = 0;
  let failed = 0;
  let blocked = null;
  for (const c of cases) {
    if (blocked) {
      failed += 1;
      console.log(`FAIL ${c.name}: not run, because "${blocked}" failed`);
      continue;
    }
    const cleanups = [];
    const notes = [];
    const t = { cleanup: (fn) => cleanups.push(fn), note: (text) => notes.push(text) };
    const started = Date.now();
    let error = null;
    try {
      await within(c.timeoutMs, Promise.resolve().then(() => c.fn(t)), 'the case to finish');
    } catch (e) {
      error = e;
    }
    for (const fn of cleanups.reverse()) {
      try {
        await within(5000, Promise.resolve().then(fn), 'cleanup');
      } catch (e) {
        notes.push(`cleanup: ${e.message}`);
      }
    }
    const ms = Date.now() - started;
    const extra = notes.length ? ` (${notes.join('; ')})` : '';
    if (error) {
      failed += 1;
      const reason = error instanceof Failure ? error.message : error.stack || String(error);
      console.log(`FAIL ${c.name}: ${reason}${extra} [${ms} ms]`);
      if (c.precondition) blocked = c.name;
    } else {
      passed += 1;
      console.log(`PASS ${c.name}${extra} [${ms} ms]`);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}
