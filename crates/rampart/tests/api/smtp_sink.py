"""A real SMTP server for the tests: aiosmtpd (PyPI) on 127.0.0.1:PORT, writing each
message it accepts to OUT_DIR as JSON (envelope, headers, and the decoded text and HTML
parts, parsed by Python's own email package). Prints "ready" once listening; runs until
killed. Usage: python3 smtp_sink.py PORT OUT_DIR"""
import email
import email.policy
import itertools
import json
import os
import signal
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out):
        self.out = out
        self.n = itertools.count()

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k.lower(): str(v) for k, v in msg.items()},
            "header_names": [k.lower() for k in msg.keys()],
            "text": text.get_content() if text else None,
            "html": html.get_content() if html else None,
            "raw": raw.decode("utf-8", "replace"),
        }
        path = os.path.join(self.out, "%d-%06d.json" % (os.getpid(), next(self.n)))
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 OK"


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    controller = Controller(Sink(out), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (controller.stop(), sys.exit(0)))
    signal.pause()


if __name__ == "__main__":
    main()
