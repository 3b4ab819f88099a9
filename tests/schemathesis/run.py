#!/usr/bin/env python3
"""Schemathesis against Rampart's own OpenAPI document, on a running `rampart serve`.

Usage:
    RAMPART_BIN=target/debug/rampart python3 tests/schemathesis/run.py [--max-examples N]

With RAMPART_TEST_DATABASE_URL set (a PostgreSQL server URL) the server runs on a fresh
PostgreSQL database made for this run (and dropped after); without it, on SQLite in a temp
data directory. Needs schemathesis (PyPI) in this Python.

What it does: creates a platform admin and a merchant tenant with the CLI, starts the
server, makes a tenant admin through the API, and then runs `st run` twice with the
default checks (every check schemathesis has: no server error, status codes, content
types and response bodies as documented, negative data rejected, positive data
accepted, ...): once as the platform admin (tenants, users, audit, keys) and once as the
tenant admin (payments, tokens, webhooks, API keys, notifications). The exit status is
schemathesis's: non-zero on any server error or schema violation. The server's log is
printed on failure.

Rate limits are raised and MFA for admins is off on this server: the fuzzer sends
thousands of requests from one address with one password-only admin, and a 429 or an
`mfa_required` on every case would test nothing. Both are tested on their own in the API
suite.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

PLATFORM_EMAIL = "admin@fuzz.example"
TENANT_EMAIL = "owner@acme.fuzz.example"
PASSWORD = "maple orbit canvas thunder river"

HERE = os.path.dirname(os.path.abspath(__file__))
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method: str, url: str, body=None, token: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with _OPENER.open(req, timeout=60) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else {}


def main() -> int:
    max_examples = "50"
    if "--max-examples" in sys.argv:
        max_examples = sys.argv[sys.argv.index("--max-examples") + 1]
    binary = os.environ.get("RAMPART_BIN", "target/debug/rampart")
    try:
        import schemathesis  # noqa: F401  (only to say clearly that it is missing)
    except ImportError:
        print("schemathesis not found: pip install schemathesis==4.32.5", file=sys.stderr)
        return 2
    # The same interpreter's schemathesis, whatever `st` on PATH is.
    st = [sys.executable, "-m", "schemathesis.cli"]

    tmp = tempfile.mkdtemp(prefix="rampart-schemathesis-")
    data_dir = os.path.join(tmp, "data")
    os.mkdir(data_dir, 0o700)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAMPART_")}
    env.update(
        RAMPART_DATA_DIR=data_dir,
        RAMPART_HTTP_LISTEN=f"127.0.0.1:{port}",
        RAMPART_AUTH_REQUIRE_MFA_FOR_ADMINS="false",
        RAMPART_EDGE_IP_PER_MINUTE="1000000",
        RAMPART_EDGE_IP_BURST="100000",
        RAMPART_EDGE_TENANT_PER_MINUTE_DEFAULT="1000000",
        RAMPART_EDGE_TENANT_BURST="100000",
        RAMPART_AUTH_LOGIN_IP_MAX_FAILURES="1000000",
        RAMPART_LOG_LEVEL="warn",
        # The WAF stays out of this run: with the CRS in front, most generated requests
        # would stop at a documented 403 and the handlers behind it would go unfuzzed. The
        # WAF has its own suites (CRS regression tests, the API suite with CRS loaded).
        RAMPART_WAF_CRS_DIR="none",
        # The SMS gateway's receipt route exists only with a shared secret (404 without);
        # with one, every unsigned or wrongly signed receipt must be refused (401).
        RAMPART_SMS_CALLBACK_SECRET="schemathesis-receipt-secret",
    )
    pg_server = os.environ.get("RAMPART_TEST_DATABASE_URL")
    db_name = None
    if pg_server:
        db_name = f"rampart_fuzz_{uuid.uuid4().hex[:12]}"
        subprocess.run(["psql", pg_server, "-qc", f"CREATE DATABASE {db_name}"], check=True)
        env["RAMPART_DATABASE_URL"] = pg_server.rsplit("/", 1)[0] + "/" + db_name
    backend = "PostgreSQL" if pg_server else "SQLite"

    def cli(*args: str, stdin: bytes = b"") -> str:
        r = subprocess.run([binary, *args], input=stdin, capture_output=True, env=env,
                           cwd=tmp, timeout=300)
        if r.returncode != 0:
            raise SystemExit(f"`rampart {' '.join(args)}` failed: {r.stderr.decode()}")
        return r.stdout.decode().strip()

    log_path = os.path.join(tmp, "server.log")
    proc = None
    try:
        cli("migrate")
        cli("admin", "create", "--email", PLATFORM_EMAIL, stdin=PASSWORD.encode())
        tenant = cli("tenants", "create", "--name", "Acme", "--kind", "merchant")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([binary, "serve"], env=env, cwd=tmp,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while True:
            try:
                if call("GET", base + "/ready")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not become ready")
            time.sleep(0.2)

        status, body = call("POST", base + "/api/v1/auth/login",
                            {"email": PLATFORM_EMAIL, "password": PASSWORD})
        assert status == 200, (status, body)
        platform_token = body["access_token"]
        status, body = call("POST", f"{base}/api/v1/tenants/{tenant}/users",
                            {"email": TENANT_EMAIL, "name": "Owner", "password": PASSWORD,
                             "role": "tenant_admin"}, token=platform_token)
        assert status == 201, (status, body)
        status, body = call("POST", base + "/api/v1/auth/login",
                            {"email": TENANT_EMAIL, "password": PASSWORD})
        assert status == 200, (status, body)
        tenant_token = body["access_token"]

        failed = False
        total = 0
        for who, token in (("platform admin", platform_token), ("tenant admin", tenant_token)):
            print(f"\n=== schemathesis on {backend}, as the {who} ===", flush=True)
            report = os.path.join(tmp, f"report-{who.replace(' ', '-')}.json")
            r = subprocess.run([
                *st, "--config-file", os.path.join(HERE, "schemathesis.toml"),
                "run", f"{base}/api/openapi.json",
                "--header", f"Authorization: Bearer {token}",
                "--max-examples", max_examples,
                "--workers", "1",
                "--request-timeout", "30",
                "--generation-database", "none",
                # NUL is refused everywhere by design (400 `invalid_text`, before any handler or
                # database sees it), which the API suite tests on both backends; generating it
                # here would only turn positive cases into negative ones.
                "--generation-allow-x00", "false",
                "--seed", os.environ.get("SCHEMATHESIS_SEED", "20261202"),
                "--report", "ndjson", "--report-ndjson-path", report,
                "--no-color",
                # Logout would end the fuzzer's own session mid-run; the API suite covers it.
                "--exclude-path", "/api/v1/auth/logout",
            ], env={**os.environ, "SCHEMATHESIS_HOOKS": ""}, cwd=tmp)
            total += count_cases(report)
            failed |= r.returncode != 0
        print(f"\nschemathesis on {backend}: {total} cases, "
              f"{'FAILED' if failed else 'no server errors and no schema violations'}")
        if failed:
            with open(log_path, "rb") as f:
                sys.stdout.write(f.read()[-20000:].decode(errors="replace"))
        return 1 if failed else 0
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if db_name:
            subprocess.run(["psql", pg_server, "-qc", f"DROP DATABASE IF EXISTS {db_name}"])
        shutil.rmtree(tmp, ignore_errors=True)


def count_cases(report: str) -> int:
    """Test cases sent, from schemathesis's ndjson event stream (0 if it has none)."""
    n = 0
    try:
        with open(report) as f:
            for line in f:
                if '"ScenarioFinished"' in line:
                    ev = json.loads(line).get("ScenarioFinished", {})
                    n += len(ev.get("recorder", {}).get("cases", {}))
    except OSError:
        return 0
    return n


if __name__ == "__main__":
    sys.exit(main())
