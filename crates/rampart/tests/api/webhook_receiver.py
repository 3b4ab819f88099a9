"""A webhook receiver that verifies every delivery with the Standard Webhooks library
(PyPI `standardwebhooks`), not with Rampart's code: 204 when the signature verifies, 400
when it does not. Appends one JSON line per delivery to OUT_FILE. Prints "ready" once
listening. Usage: python3 webhook_receiver.py SECRET PORT OUT_FILE"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

secret, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
hook = Webhook(secret)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            payload = hook.verify(body, headers)
            verified, error = True, None
        except Exception as e:  # the library's WebhookVerificationError, or bad JSON
            payload, verified, error = None, False, repr(e)
        with open(out, "a") as f:
            f.write(json.dumps({
                "verified": verified,
                "error": error,
                "webhook_id": headers.get("webhook-id"),
                "type": payload.get("type") if isinstance(payload, dict) else None,
            }) + "\n")
        self.send_response(204 if verified else 400)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
print("ready", flush=True)
server.serve_forever()
