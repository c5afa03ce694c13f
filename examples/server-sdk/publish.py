# The app's backend with the official `pusher` SDK (PyPI, 3.3), unchanged: it holds only
# a local credential (channelgate's publish.clients) and channelgate's admin listener
# is its host. tests/e2e/sdk.mjs runs this file as it is.
import json
import os

import pusher

pusher_client = pusher.Pusher(
    app_id="424242",                                                          # publish.clients[].app_id (digits)
    key="my-app-local",                                                       # publish.clients[].key
    secret=os.environ["CHANNELGATE_PUBLISH_SECRET"],                          # its local secret
    encryption_master_key_base64=os.environ["CHANNELGATE_PUBLISH_MASTER_KEY"],  # its local master key
    host=os.environ.get("CHANNELGATE_HOST", "127.0.0.1"),                     # channelgate's admin listener
    port=int(os.environ.get("CHANNELGATE_PORT", "9090")),
    ssl=False,
)

pusher_client.trigger("private-user-alice", "notify", {"text": "hello from python"})
# The SDK seals this with the local master key; channelgate re-seals it with the real one.
pusher_client.trigger("private-encrypted-team-acme", "plan", {"launch": "monday"})
pusher_client.send_to_user("alice", "direct", {"text": "python, only for alice"})
info = pusher_client.channel_info("presence-room-42", ["user_count"])
print(json.dumps(info))  # {"occupied": true, "user_count": 1}
