// HS256 session tokens, minted the way an app's login would mint them.
// node:crypto only: the suite depends on no JWT library of its own.
import { createHmac } from 'node:crypto';

const b64url = (data) => Buffer.from(data).toString('base64url');

/** A compact HS256 JWT over `claims` (iat/exp added unless given). */
export function mintToken(secret, claims, { ttlSeconds = 600 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const body = { iat: now, exp: now + ttlSeconds, ...claims };
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify(body));
  const sig = createHmac('sha256', secret).update(`${head}.${payload}`).digest('base64url');
  return `${head}.${payload}.${sig}`;
}
