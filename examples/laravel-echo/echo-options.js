// Laravel Echo options for channelgate (laravel-echo 2.x, broadcaster "pusher").
// No imports, so the e2e suite runs this very function against Sockudo
// (tests/e2e/e2e.mjs, "laravel-echo" cases).
//
// Echo hands these to pusher-js: `authEndpoint` + `auth.headers` for channels
// (pusher-js's older option names; same request), `userAuthentication` for
// pusher.signin(). `bearerToken` makes Echo add `Authorization: Bearer <jwt>`
// to both. Cross-origin, the token must travel in a header or the body:
// browsers never send cookies to another origin.
export function channelgateEchoOptions({ key, wsHost, wsPort, forceTLS = true, gatewayUrl, sessionJwt }) {
  return {
    broadcaster: 'pusher',
    key,
    cluster: 'mt1', // required by pusher-js; wsHost/wsPort win when set
    wsHost,
    wsPort,
    wssPort: wsPort,
    forceTLS,
    enabledTransports: forceTLS ? ['wss'] : ['ws'],
    authEndpoint: `${gatewayUrl}/pusher/auth`,
    // Fresh objects: Echo writes its headers into them.
    auth: { headers: {} },
    userAuthentication: { endpoint: `${gatewayUrl}/pusher/user-auth`, headers: {} },
    bearerToken: sessionJwt,
  };
}
