# Runs one call of the official `pusher` SDK from PyPI (3.3), configured as its
# README says -- app_id, key, secret, encryption_master_key_base64, host, port,
# ssl -- with channelgate's local credential; prints one JSON line with the
# result or the SDK's error. Used by sdk.mjs (venv made by run.sh):
#   python py_sdk.py '{"call": "trigger", "args": [...], "kwargs": {...}, "client": {...}}'
# "client" overrides the credential (app_id, key, secret, master) for refusal cases.
import json
import os
import sys

import pusher
import pusher.errors


def main():
    cmd = json.loads(sys.argv[1])
    cfg = cmd.get("client", {})
    client = pusher.Pusher(
        app_id=cfg.get("app_id", "424242"),
        key=cfg.get("key", "my-app-local"),
        secret=cfg.get("secret", os.environ["CHANNELGATE_PUBLISH_SECRET"]),
        encryption_master_key_base64=cfg.get("master", os.environ["CHANNELGATE_PUBLISH_MASTER_KEY"]),
        host=os.environ["CHANNELGATE_HOST"],
        port=int(os.environ["CHANNELGATE_PORT"]),
        ssl=False,
        timeout=5,
    )
    try:
        result = getattr(client, cmd["call"])(*cmd.get("args", []), **cmd.get("kwargs", {}))
    except pusher.errors.PusherError as e:
        print(json.dumps({"ok": False, "error": type(e).__name__, "message": str(e)}))
        return
    print(json.dumps({"ok": True, "result": result}))


main()
