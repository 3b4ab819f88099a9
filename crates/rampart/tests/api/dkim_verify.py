"""Verifies a mail's DKIM-Signature with dkimpy (PyPI `dkimpy`, Ed25519 through PyNaCl),
not with Rampart's code, against the TXT record Rampart printed. Prints one JSON line:
{"verified": <the mail as received>, "tampered": <the same mail with its Subject
changed>}. Usage: python3 dkim_verify.py MAIL_FILE DNS_NAME RECORD"""
import json
import logging
import sys

import dkim

mail_file, dns_name, record = sys.argv[1], sys.argv[2], sys.argv[3]
with open(mail_file, "rb") as f:
    raw = f.read()


def dnsfunc(name, timeout=5):
    if name.rstrip(b".").lower() == dns_name.encode().lower():
        return record.encode()
    return None


log = logging.getLogger("dkim")
logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)
tampered = raw.replace(b"Subject: ", b"Subject: Re: ", 1)
print(json.dumps({
    "verified": bool(dkim.verify(raw, logger=log, dnsfunc=dnsfunc)),
    "tampered": bool(dkim.verify(tampered, dnsfunc=dnsfunc)),
    "signed": raw.lower().count(b"dkim-signature:"),
}))
