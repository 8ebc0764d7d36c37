#!/usr/bin/env python3
"""A minimal bulkwatch webhook receiver: verifies the Standard Webhooks signature and prints events.

    pip install standardwebhooks
    export BULKWATCH_WEBHOOK_SECRET=$(bulkwatch webhook-secret)
    python3 receiver.py 8787 &
    bulkwatch demo --sink webhook:http://127.0.0.1:8787/

The secret comes from BULKWATCH_WEBHOOK_SECRET (the same value bulkwatch signs with; several
space-separated secrets during rotation: any one that verifies is enough). Answers 204 when the
signature verifies, 401 otherwise (bulkwatch then dead-letters the event after 3 attempts).
Deduplicate on the event id: bulkwatch delivers at least once.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

SECRETS = os.environ.get("BULKWATCH_WEBHOOK_SECRET", "").split()
if not SECRETS:
    sys.exit("set BULKWATCH_WEBHOOK_SECRET (create one with: bulkwatch webhook-secret)")
VERIFIERS = [Webhook(secret) for secret in SECRETS]
SEEN = set()


def verify(body: bytes, headers) -> bool:
    wanted = {name: headers.get(name, "") for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    for verifier in VERIFIERS:
        try:
            verifier.verify(body, wanted)
            return True
        except WebhookVerificationError:
            continue
    return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: bulkwatch reuses its connection

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not verify(body, self.headers):
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            print("rejected: bad signature", file=sys.stderr)
            return
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if not (isinstance(parsed, list) or (isinstance(parsed, dict) and "specversion" in parsed)):
            # A chat format or a template (format=slack, template=...): show the body as posted.
            print(body.decode("utf-8", "replace"), flush=True)
            parsed = []
        for event in parsed if isinstance(parsed, list) else [parsed]:
            duplicate = " (duplicate)" if event["id"] in SEEN else ""
            SEEN.add(event["id"])
            data = event.get("data") or {}
            print(f'{event["sequence"]:>6} {event["type"]:<13} {event["subject"]} {data.get("status")}{duplicate}',
                  flush=True)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8787
    print(f"listening on http://127.0.0.1:{port}/", file=sys.stderr)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
