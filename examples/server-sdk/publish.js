// The app's backend with the official `pusher` SDK (npm, 5.x), unchanged: it holds only
// a local credential (channelgate's publish.clients) and channelgate's admin listener
// is its host. tests/e2e/sdk.mjs runs this file as it is.
const Pusher = require("pusher");

const pusher = new Pusher({
  appId: "424242",                                                       // publish.clients[].app_id
  key: "my-app-local",                                                   // publish.clients[].key
  secret: process.env.CHANNELGATE_PUBLISH_SECRET,                        // its local secret
  encryptionMasterKeyBase64: process.env.CHANNELGATE_PUBLISH_MASTER_KEY, // its local master key
  host: process.env.CHANNELGATE_HOST || "127.0.0.1",                     // channelgate's admin listener
  port: process.env.CHANNELGATE_PORT || "9090",
  useTLS: false,
});

async function main() {
  await pusher.trigger("private-user-alice", "notify", { text: "hello from node" });
  // The SDK seals this with the local master key; channelgate re-seals it with the real one.
  await pusher.trigger("private-encrypted-team-acme", "plan", { launch: "friday" });
  await pusher.sendToUser("alice", "direct", { text: "only for alice" });
  const res = await pusher.get({ path: "/channels/presence-room-42", params: { info: "user_count" } });
  console.log(JSON.stringify(await res.json())); // {"occupied":true,"user_count":1}
}

main().catch((e) => {
  console.error(e.message, e.status ?? "", e.body ?? "");
  process.exit(1);
});
