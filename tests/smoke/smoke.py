#!/usr/bin/env python3
"""End-to-end smoke test for the built `rampart` binary.

Usage:
    RAMPART_BIN=target/debug/rampart python3 tests/smoke/smoke.py

Needs Python 3.11+ with PyJWT and cryptography (`pip install pyjwt cryptography`).

It creates a fresh data directory, creates a platform admin and a tenant with
the CLI, starts `rampart serve` on a free loopback port and runs a list of
named checks against it, printing one `PASS name` / `FAIL name: reason` line
per check and finally `smoke: N passed, M failed`. The exit status is non-zero
if any check failed. The server is always stopped and the temp dir removed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
import urllib.error
import urllib.request

import jwt  # PyJWT
import pyotp  # an independent TOTP implementation

ADMIN_EMAIL = "admin@smoke.example"
ADMIN_PASSWORD = "maple orbit canvas thunder river"
ISSUER = "rampart"
AUDIENCE = "rampart"
ACCESS_TTL = 900
SECRET = "hunter2"

STARTUP_TIMEOUT = 15.0  # seconds for /health to answer
SHUTDOWN_TIMEOUT = 10.0  # seconds for SIGTERM to stop the server
CLI_TIMEOUT = 120.0  # seconds for a CLI command (debug builds hash slowly)
HTTP_TIMEOUT = 10.0


class CheckFailed(Exception):
    pass


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


# --------------------------------------------------------------------------
# HTTP helpers (urllib only, never through a proxy: the server is loopback)
# --------------------------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Response:
    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise CheckFailed(f"body is not JSON ({e}): {self.body[:300]!r}")

    def __repr__(self) -> str:
        return f"<HTTP {self.status} {self.body[:300]!r}>"


def http(method: str, url: str, body=None, token: str | None = None,
         headers: dict | None = None) -> Response:
    data = None
    hdrs = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    if headers:
        hdrs.update(headers)
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    try:
        with _OPENER.open(req, timeout=HTTP_TIMEOUT) as r:
            return Response(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read())


def expect_status(resp: Response, status: int, what: str) -> None:
    expect(resp.status == status, f"{what}: expected HTTP {status}, got {resp!r}")


def expect_error(resp: Response, status: int, what: str,
                 code: str | None = None) -> dict:
    """Checks the documented error envelope and the X-Request-Id header."""
    expect_status(resp, status, what)
    rid = resp.header("X-Request-Id")
    expect(bool(rid), f"{what}: no X-Request-Id header on the error response")
    body = resp.json()
    expect(isinstance(body, dict) and isinstance(body.get("error"), dict),
           f"{what}: body is not {{\"error\": {{...}}}}: {body!r}")
    err = body["error"]
    for key in ("code", "message", "request_id"):
        expect(isinstance(err.get(key), str) and err[key] != "",
               f"{what}: error.{key} missing or empty: {body!r}")
    expect(err["request_id"] == rid,
           f"{what}: error.request_id {err['request_id']!r} != X-Request-Id header {rid!r}")
    if code is not None:
        expect(err["code"] == code, f"{what}: expected error.code {code!r}, got {err['code']!r}")
    return err


# --------------------------------------------------------------------------
# JWT helpers
# --------------------------------------------------------------------------

def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url_encode(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def tamper_payload(token: str) -> str:
    """Returns the token with a modified payload and the original signature."""
    header, payload, sig = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims["sub"] = str(claims.get("sub")) + "-tampered"
    new_payload = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    expect(new_payload != payload, "tampering did not change the payload")
    return f"{header}.{new_payload}.{sig}"


# --------------------------------------------------------------------------
# The smoke run
# --------------------------------------------------------------------------

class Smoke:
    def __init__(self, binary: str):
        self.bin = binary
        self.tmp = tempfile.mkdtemp(prefix="rampart-smoke-")
        self.data_dir = os.path.join(self.tmp, "data")
        os.mkdir(self.data_dir, 0o700)
        self.log_path = os.path.join(self.tmp, "server.log")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_file = None
        self.ctx: dict = {}
        self.results: list[tuple[str, bool, str]] = []

    # ---- process helpers ------------------------------------------------

    def env(self, **extra: str) -> dict:
        # A clean environment: no RAMPART_* leaking in from the caller.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAMPART_")}
        env["RAMPART_DATA_DIR"] = self.data_dir
        env["RAMPART_HTTP_LISTEN"] = f"127.0.0.1:{self.port}"
        env.update(extra)
        return env

    def cli(self, *args: str, stdin: bytes | None = None, **extra_env: str):
        # cwd is the temp dir so that no ./rampart.toml is picked up.
        return subprocess.run(
            [self.bin, *args], input=stdin if stdin is not None else b"",
            capture_output=True, env=self.env(**extra_env), cwd=self.tmp,
            timeout=CLI_TIMEOUT)

    def url(self, path: str) -> str:
        self.need("server")
        return self.base + path

    def need(self, key: str):
        if key not in self.ctx:
            raise CheckFailed(f"not run: needs {key!r} from an earlier check that failed")
        return self.ctx[key]

    # ---- checks: CLI ----------------------------------------------------

    def check_config_show_redacts(self):
        url = f"postgres://u:{SECRET}@h/db"
        r = self.cli("config", "show", RAMPART_DATABASE_URL=url)
        out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        expect(r.returncode == 0, f"exit {r.returncode}; stderr: {err.strip()}")
        expect(SECRET not in out and SECRET not in err,
               f"secret {SECRET!r} printed by `config show`:\n{out}{err}")
        try:
            cfg = tomllib.loads(out)
        except tomllib.TOMLDecodeError as e:
            raise CheckFailed(f"output is not TOML ({e}):\n{out}")
        expect(cfg.get("http", {}).get("listen") == f"127.0.0.1:{self.port}",
               f"http.listen does not reflect RAMPART_HTTP_LISTEN: {cfg.get('http')!r}")

    def check_config_bad_value_rejected(self):
        r = self.cli("config", "show", RAMPART_HTTP_LISTEN="nope")
        msg = (r.stdout + r.stderr).decode(errors="replace")
        expect(r.returncode != 0, f"exit 0 with RAMPART_HTTP_LISTEN=nope; output:\n{msg}")
        expect("RAMPART_HTTP_LISTEN" in msg or "listen" in msg,
               f"error does not name RAMPART_HTTP_LISTEN/listen: {msg.strip()!r}")

    def check_admin_create(self):
        r = self.cli("admin", "create", "--email", ADMIN_EMAIL, stdin=ADMIN_PASSWORD.encode())
        expect(r.returncode == 0,
               f"exit {r.returncode}; stdout: {r.stdout.decode().strip()!r}; "
               f"stderr: {r.stderr.decode().strip()!r}")
        # The password came from stdin: it must not be echoed back.
        expect(ADMIN_PASSWORD.encode() not in r.stdout + r.stderr,
               "the admin password was printed")
        self.ctx["admin"] = True

    def check_tenant_create(self):
        r = self.cli("tenants", "create", "--name", "Acme", "--kind", "merchant")
        expect(r.returncode == 0,
               f"exit {r.returncode}; stderr: {r.stderr.decode().strip()!r}")
        out = r.stdout.decode().strip()
        expect(out != "" and len(out.split()) == 1,
               f"expected just the tenant id on stdout, got {out!r}")
        self.ctx["tenant_id"] = out

    # ---- checks: server -------------------------------------------------

    def check_server_starts_health(self):
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [self.bin, "serve"], env=self.env(), cwd=self.tmp,
            stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=self.log_file)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CheckFailed(f"server exited early with status {self.proc.returncode}")
            try:
                r = http("GET", self.base + "/health")
                expect_status(r, 200, "GET /health")
                expect(r.json() == {"status": "ok"}, f"GET /health body: {r.body!r}")
                self.ctx["server"] = True
                return
            except (urllib.error.URLError, ConnectionError, socket.timeout, OSError) as e:
                last = repr(e)
            time.sleep(0.2)
        raise CheckFailed(f"GET /health did not answer within {STARTUP_TIMEOUT}s ({last})")

    def check_ready(self):
        r = http("GET", self.url("/ready"))
        expect_status(r, 200, "GET /ready")
        expect(r.json() == {"status": "ready"}, f"GET /ready body: {r.body!r}")

    def check_login(self):
        self.need("admin")
        r = http("POST", self.url("/api/v1/auth/login"),
                 {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        expect_status(r, 200, "POST /api/v1/auth/login")
        b = r.json()
        for key in ("access_token", "refresh_token"):
            expect(isinstance(b.get(key), str) and b[key], f"{key} missing: {b!r}")
        expect(b.get("token_type") == "Bearer", f"token_type: {b.get('token_type')!r}")
        expect(b.get("expires_in") == ACCESS_TTL, f"expires_in: {b.get('expires_in')!r}")
        self.ctx["login"] = b

    def check_login_wrong_password(self):
        r = http("POST", self.url("/api/v1/auth/login"),
                 {"email": ADMIN_EMAIL, "password": "definitely not the password"})
        expect_error(r, 401, "login with a wrong password", code="invalid_credentials")

    def check_request_id_echo(self):
        rid = "smoke-123"
        # On an error response: header and error.request_id.
        r = http("POST", self.url("/api/v1/auth/login"),
                 {"email": ADMIN_EMAIL, "password": "definitely not the password"},
                 headers={"X-Request-Id": rid})
        err = expect_error(r, 401, "login with X-Request-Id")
        expect(r.header("X-Request-Id") == rid,
               f"X-Request-Id header: sent {rid!r}, got {r.header('X-Request-Id')!r}")
        expect(err["request_id"] == rid,
               f"error.request_id: sent {rid!r}, got {err['request_id']!r}")
        # On a success response: header.
        r = http("GET", self.url("/health"), headers={"X-Request-Id": rid})
        expect_status(r, 200, "GET /health with X-Request-Id")
        expect(r.header("X-Request-Id") == rid,
               f"GET /health X-Request-Id header: sent {rid!r}, got {r.header('X-Request-Id')!r}")
        # Without one, the server generates one.
        r = http("GET", self.url("/health"))
        expect(bool(r.header("X-Request-Id")), "GET /health without X-Request-Id: none generated")

    def check_jwks(self):
        r = http("GET", self.url("/.well-known/jwks.json"))
        expect_status(r, 200, "GET /.well-known/jwks.json")
        jwks = r.json()
        keys = jwks.get("keys") if isinstance(jwks, dict) else None
        expect(isinstance(keys, list) and keys, f"no keys: {jwks!r}")
        for k in keys:
            want = {"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig"}
            for f, v in want.items():
                expect(k.get(f) == v, f"key {k.get('kid')!r}: {f}={k.get(f)!r}, want {v!r}")
            for f in ("x", "y", "kid"):
                expect(isinstance(k.get(f), str) and k[f], f"key lacks {f}: {k!r}")
            expect("d" not in k, f"JWKS publishes a private key component: {k.get('kid')!r}")
        self.ctx["jwks"] = jwks

    def check_access_token_header(self):
        token = self.need("login")["access_token"]
        jwks = self.need("jwks")
        h = jwt.get_unverified_header(token)
        expect(h.get("alg") == "ES256", f"alg: {h.get('alg')!r}")
        expect(h.get("typ") == "at+jwt", f"typ: {h.get('typ')!r}")
        kids = [k["kid"] for k in jwks["keys"]]
        expect(h.get("kid") in kids, f"kid {h.get('kid')!r} not in JWKS {kids!r}")

    def verify(self, token: str) -> dict:
        """Verifies an access token with PyJWT against the server's JWKS."""
        jwks = self.need("jwks")
        keyset = jwt.PyJWKSet.from_dict(jwks)
        kid = jwt.get_unverified_header(token).get("kid")
        matches = [k for k in keyset.keys if k.key_id == kid]
        expect(len(matches) == 1, f"kid {kid!r}: {len(matches)} matching JWKS keys")
        return jwt.decode(
            token, key=matches[0], algorithms=["ES256"],
            audience=AUDIENCE, issuer=ISSUER,
            options={"require": ["iss", "aud", "sub", "iat", "exp", "jti"],
                     "verify_signature": True, "verify_exp": True,
                     "verify_aud": True, "verify_iss": True})

    def check_pyjwt_verifies_access_token(self):
        login = self.need("login")
        try:
            claims = self.verify(login["access_token"])
        except jwt.PyJWTError as e:
            raise CheckFailed(f"PyJWT rejected the access token: {type(e).__name__}: {e}")
        expect(claims["iss"] == ISSUER and claims["aud"] == AUDIENCE,
               f"iss/aud: {claims.get('iss')!r}/{claims.get('aud')!r}")
        for f in ("sub", "tenant", "sid", "jti"):
            expect(isinstance(claims.get(f), str) and claims[f], f"claim {f}: {claims.get(f)!r}")
        for f in ("iat", "exp"):
            expect(isinstance(claims.get(f), int), f"claim {f}: {claims.get(f)!r}")
        lifetime = claims["exp"] - claims["iat"]
        expect(abs(lifetime - login["expires_in"]) <= 1,
               f"exp - iat = {lifetime}, but expires_in = {login['expires_in']}")
        expect(abs(claims["iat"] - time.time()) < 300, f"iat {claims['iat']} is far from now")
        self.ctx["claims"] = claims

    def check_pyjwt_rejects_tampered(self):
        token = self.need("login")["access_token"]
        self.need("claims")  # the untampered token must verify first
        bad = tamper_payload(token)
        try:
            self.verify(bad)
        except jwt.InvalidSignatureError:
            pass
        except jwt.PyJWTError as e:
            raise CheckFailed(f"rejected, but not for the signature: {type(e).__name__}: {e}")
        else:
            raise CheckFailed("PyJWT accepted a token with a tampered payload")
        # And the audience/issuer checks are really applied.
        for kwargs, exc in (({"audience": "someone-else", "issuer": ISSUER}, jwt.InvalidAudienceError),
                            ({"audience": AUDIENCE, "issuer": "someone-else"}, jwt.InvalidIssuerError)):
            key = jwt.PyJWKSet.from_dict(self.need("jwks"))[jwt.get_unverified_header(token)["kid"]]
            try:
                jwt.decode(token, key=key, algorithms=["ES256"], **kwargs)
            except exc:
                pass
            else:
                raise CheckFailed(f"PyJWT accepted the token with {kwargs!r}")

    def check_users_me(self):
        login = self.need("login")
        r = http("GET", self.url("/api/v1/users/me"), token=login["access_token"])
        expect_status(r, 200, "GET /api/v1/users/me")
        u = r.json()
        expect(isinstance(u, dict), f"body: {u!r}")
        expect(u.get("email") == ADMIN_EMAIL, f"email: {u.get('email')!r}")
        if "claims" in self.ctx:
            expect(u.get("id") == self.ctx["claims"]["sub"],
                   f"user id {u.get('id')!r} != token sub {self.ctx['claims']['sub']!r}")

    def check_users_me_tampered(self):
        token = self.need("login")["access_token"]
        r = http("GET", self.url("/api/v1/users/me"), token=tamper_payload(token))
        expect_error(r, 401, "GET /api/v1/users/me with a tampered token")

    def check_refresh_rotation(self):
        old = self.need("login")
        r = http("POST", self.url("/api/v1/auth/refresh"), {"refresh_token": old["refresh_token"]})
        expect_status(r, 200, "POST /api/v1/auth/refresh")
        b = r.json()
        for key in ("access_token", "refresh_token"):
            expect(isinstance(b.get(key), str) and b[key], f"{key} missing: {b!r}")
        expect(b["refresh_token"] != old["refresh_token"], "refresh token was not rotated")
        expect(b["access_token"] != old["access_token"], "access token was not renewed")
        try:
            self.verify(b["access_token"])
        except jwt.PyJWTError as e:
            raise CheckFailed(f"PyJWT rejected the refreshed access token: {e}")
        self.ctx["refreshed"] = b

    def check_refresh_reuse_rejected(self):
        old = self.need("login")
        self.need("refreshed")
        r = http("POST", self.url("/api/v1/auth/refresh"), {"refresh_token": old["refresh_token"]})
        expect_error(r, 401, "reusing an already-used refresh token")
        self.ctx["reused"] = True

    def check_refresh_family_revoked(self):
        new = self.need("refreshed")
        self.need("reused")
        r = http("POST", self.url("/api/v1/auth/refresh"), {"refresh_token": new["refresh_token"]})
        expect_error(r, 401, "refreshing with the new token after reuse of the old one")

    def check_logout(self):
        self.need("admin")
        # A fresh session, independent of the family revoked above.
        r = http("POST", self.url("/api/v1/auth/login"),
                 {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        expect_status(r, 200, "second login")
        token = r.json()["access_token"]
        r = http("GET", self.url("/api/v1/users/me"), token=token)
        expect_status(r, 200, "GET /api/v1/users/me before logout")
        r = http("POST", self.url("/api/v1/auth/logout"), token=token)
        expect_status(r, 204, "POST /api/v1/auth/logout")
        r = http("GET", self.url("/api/v1/users/me"), token=token)
        expect_error(r, 401, "GET /api/v1/users/me after logout")

    def check_mfa_with_pyotp(self):
        """Enrol TOTP with codes from pyotp, log in with MFA, and see a replayed code fail."""
        self.need("admin")
        r = http("POST", self.url("/api/v1/auth/login"),
                 {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        expect_status(r, 200, "login before enrolment")
        token = r.json()["access_token"]
        r = http("POST", self.url("/api/v1/tenants"), {"name": "NoMfa", "kind": "lpk"}, token=token)
        expect_error(r, 403, "admin action before MFA", code="mfa_required")
        r = http("POST", self.url("/api/v1/auth/mfa/totp/enroll"), {}, token=token)
        expect_status(r, 200, "enrol")
        enrolment = r.json()
        totp = pyotp.parse_uri(enrolment["otpauth_uri"])
        expect(totp.secret == enrolment["secret"], "otpauth URI and secret disagree")
        now = time.time()
        first = totp.at(now)
        r = http("POST", self.url("/api/v1/auth/mfa/totp/confirm"), {"code": first}, token=token)
        expect_status(r, 200, "confirm with a pyotp code")
        expect(len(r.json()["recovery_codes"]) == 10, "ten recovery codes")
        r = http("POST", self.url("/api/v1/auth/login"),
                 {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        expect_status(r, 200, "login with MFA on")
        challenge = r.json()
        expect(challenge.get("mfa_required") is True and "access_token" not in challenge,
               f"expected an MFA challenge, got {challenge!r}")
        r = http("POST", self.url("/api/v1/auth/mfa"),
                 {"mfa_token": challenge["mfa_token"], "code": first})
        expect_error(r, 401, "replayed TOTP code", code="invalid_mfa_code")
        # The next 30-second step's code is within the accepted drift and not yet used.
        r = http("POST", self.url("/api/v1/auth/mfa"),
                 {"mfa_token": challenge["mfa_token"], "code": totp.at(now + 30)})
        expect_status(r, 200, "MFA login with a fresh pyotp code")
        token = r.json()["access_token"]
        r = http("POST", self.url("/api/v1/tenants"), {"name": "WithMfa", "kind": "lpk"}, token=token)
        expect_status(r, 201, "admin action after MFA")

    def check_metrics(self):
        r = http("GET", self.url("/metrics"), headers={"Accept": "text/plain"})
        expect_status(r, 200, "GET /metrics")
        text = r.body.decode(errors="replace")
        for name in ("http_requests_total", "rampart_login_attempts_total"):
            expect(name in text, f"{name} not in /metrics")

    def check_openapi(self):
        r = http("GET", self.url("/api/openapi.json"))
        expect_status(r, 200, "GET /api/openapi.json")
        doc = r.json()
        expect(isinstance(doc, dict) and isinstance(doc.get("paths"), dict),
               "no \"paths\" object")
        expect("/api/v1/auth/login" in doc["paths"],
               f"/api/v1/auth/login not in paths: {sorted(doc['paths'])!r}")

    def check_sigterm(self):
        self.need("server")
        expect(self.proc.poll() is None, f"server already exited ({self.proc.returncode})")
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"still running {SHUTDOWN_TIMEOUT}s after SIGTERM")
        expect(rc == 0, f"exit status {rc} after SIGTERM")

    # ---- running --------------------------------------------------------

    def checks(self):
        return [
            ("config show redacts secrets", self.check_config_show_redacts),
            ("config rejects RAMPART_HTTP_LISTEN=nope", self.check_config_bad_value_rejected),
            ("admin create", self.check_admin_create),
            ("tenants create", self.check_tenant_create),
            ("serve starts; GET /health", self.check_server_starts_health),
            ("GET /ready", self.check_ready),
            ("login", self.check_login),
            ("login wrong password -> 401 invalid_credentials", self.check_login_wrong_password),
            ("X-Request-Id is echoed", self.check_request_id_echo),
            ("JWKS", self.check_jwks),
            ("access token header (ES256, at+jwt, kid)", self.check_access_token_header),
            ("PyJWT verifies access token with JWKS key", self.check_pyjwt_verifies_access_token),
            ("PyJWT rejects tampered token", self.check_pyjwt_rejects_tampered),
            ("GET /api/v1/users/me", self.check_users_me),
            ("GET /api/v1/users/me tampered token -> 401", self.check_users_me_tampered),
            ("refresh rotates the pair", self.check_refresh_rotation),
            ("refresh token reuse -> 401", self.check_refresh_reuse_rejected),
            ("reuse revokes the refresh family", self.check_refresh_family_revoked),
            ("logout -> 204, then access token -> 401", self.check_logout),
            ("TOTP enrolment and MFA login with pyotp codes; replay fails", self.check_mfa_with_pyotp),
            ("GET /metrics", self.check_metrics),
            ("GET /api/openapi.json", self.check_openapi),
            ("SIGTERM -> exit 0", self.check_sigterm),
        ]

    def run(self) -> int:
        for name, fn in self.checks():
            if name != "SIGTERM -> exit 0" and self.proc is not None and self.proc.poll() is not None \
                    and "server" in self.ctx:
                ok, why = False, f"not run: server exited with status {self.proc.returncode}"
            else:
                try:
                    fn()
                    ok, why = True, ""
                except CheckFailed as e:
                    ok, why = False, str(e)
                except (urllib.error.URLError, OSError, jwt.PyJWTError) as e:
                    ok, why = False, f"{type(e).__name__}: {e}"
                except Exception as e:  # a bug or an unexpected response shape
                    ok, why = False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
            self.results.append((name, ok, why))
            print(f"PASS {name}" if ok else f"FAIL {name}: {why}", flush=True)
        passed = sum(1 for _, ok, _ in self.results if ok)
        failed = len(self.results) - passed
        if failed:
            self.dump_log()
        print(f"smoke: {passed} passed, {failed} failed", flush=True)
        return 1 if failed else 0

    def dump_log(self):
        try:
            if self.log_file is not None:
                self.log_file.flush()
            with open(self.log_path, "rb") as f:
                log = f.read().decode(errors="replace")
        except OSError:
            return
        print("---- server log ----", flush=True)
        print(log, end="" if log.endswith("\n") else "\n")
        print("---- end of server log ----", flush=True)

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log_file is not None:
            self.log_file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    binary = os.environ.get("RAMPART_BIN")
    if not binary:
        print("smoke: set RAMPART_BIN to the rampart binary", file=sys.stderr)
        return 2
    binary = os.path.abspath(binary)
    if not os.access(binary, os.X_OK):
        print(f"smoke: RAMPART_BIN={binary} is not an executable file", file=sys.stderr)
        return 2
    smoke = Smoke(binary)
    try:
        return smoke.run()
    finally:
        smoke.cleanup()


if __name__ == "__main__":
    sys.exit(main())
