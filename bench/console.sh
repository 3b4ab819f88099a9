#!/usr/bin/env bash
# Console pages over 10,000 payments: latency of the pages a merchant uses most, against
# /health measured in the same run.
#
# Starts a fresh `rampart serve` (SQLite, no CRS: the WAF has its own benchmark) on a
# temporary data directory, creates a merchant with 10,000 payments through the API, signs
# its admin in to the console with curl (the same form a browser posts), then runs wrk with
# that session cookie against
#   GET /health                              (the baseline)
#   GET /console/                            (session check + users/me)
#   GET /console/payments                    (the first page of 50, newest first)
#   GET /console/payments?cursor=…           (a page 2,500 payments deep)
#   GET /console/payments/{id}               (one payment with its audit history)
# and prints req/s and p50/p95/p99 for each, and each page's rate as a ratio of /health's.
# The issue's aim: every page under 50 ms p95 on this machine.
#
# Usage: bench/console.sh
# Environment:
#   RAMPART_BIN        binary to run (default: build and use target/release/rampart)
#   BENCH_PAYMENTS     payments to create first (default 10000)
#   BENCH_DURATION     seconds of measured load per page (default 10)
#   BENCH_CONNECTIONS  open connections (default 32)
#   BENCH_WARMUP       seconds of unmeasured load per page before measuring (default 1)
#
# This is a benchmark, not a test: it fails only when the server cannot be started or
# answers with errors, never because a number is low.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly ROOT=root@bench.example MERCHANT=admin@shop.bench.example
readonly PASSWORD='maple orbit canvas thunder river'
PAYMENTS=${BENCH_PAYMENTS:-10000}
[[ $PAYMENTS =~ ^[0-9]+$ ]] && ((PAYMENTS >= 100 && PAYMENTS <= 200000)) \
    || die "BENCH_PAYMENTS must be 100..200000"

read_load_settings
need_tool wrk wrk
need_tool curl curl
need_tool python3 python3
resolve_bin
clear_rampart_env
prepare_workdir
write_report_lua

export RAMPART_WAF_CRS_DIR=none RAMPART_EDGE_RATE_LIMIT_ENABLED=false
# The merchant admin works without enrolling TOTP here; sign-in with it is tested in
# tests/browser/.
export RAMPART_AUTH_REQUIRE_MFA_FOR_ADMINS=false

printf '%s' "$PASSWORD" | "$bin" admin create --email "$ROOT" >"$work/setup.log" 2>&1 \
    || { cat "$work/setup.log" >&2; die "admin create failed"; }
tenant=$("$bin" tenants create --name Shop --kind merchant 2>"$work/setup.log") \
    || { cat "$work/setup.log" >&2; die "tenants create failed"; }
api_key=$("$bin" api-keys create --tenant "$tenant" --name bench --scopes payments:write 2>"$work/setup.log") \
    || { cat "$work/setup.log" >&2; die "api-keys create failed"; }
start_server

login() {
    curl -fsS --max-time 30 -H 'content-type: application/json' \
        -d "{\"email\":\"$1\",\"password\":\"$PASSWORD\"}" "$base/api/v1/auth/login" \
        | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p'
}
root_token=$(login "$ROOT")
[[ -n $root_token ]] || die "the platform admin cannot log in"
curl -fsS --max-time 30 -o /dev/null -H "Authorization: Bearer $root_token" -H 'content-type: application/json' \
    -d "{\"email\":\"$MERCHANT\",\"password\":\"$PASSWORD\",\"role\":\"tenant_admin\"}" \
    "$base/api/v1/tenants/$tenant/users" || die "cannot create the merchant admin"

# --- 10,000 payments through the API (8 clients at once) ---------------------------------
echo "creating $PAYMENTS payments ..." >&2
python3 - "$base" "$api_key" "$PAYMENTS" <<'PY' || die "creating payments failed"
import json, random, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
base, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def card():
    d = [4] + [random.randint(0, 9) for _ in range(14)]
    s = sum((v * 2 - 9 if v * 2 > 9 else v * 2) if (15 - i) % 2 == 1 else v
            for i, v in enumerate(d))
    return "".join(map(str, d)) + str((10 - s % 10) % 10)
def pay(i):
    body = {"amount": random.randint(10000, 500000), "currency": "IDR",
            "card": {"number": card(), "exp_month": 12, "exp_year": 2031, "cvc": "123"},
            "description": f"Kursus las {i}",
            "customer": {"email": f"buyer{i}@example.id", "ip": f"10.{i % 250}.{i // 250 % 250}.{i % 200 + 1}", "country": "US"}}
    req = urllib.request.Request(base + "/api/v1/payments", data=json.dumps(body).encode(),
        headers={"authorization": "Bearer " + key, "content-type": "application/json"})
    with opener.open(req, timeout=30) as r:
        return r.status
codes = list(ThreadPoolExecutor(8).map(pay, range(n)))
bad = [c for c in codes if c != 201]
if bad:
    sys.exit(f"{len(bad)} payments were not created")
PY

# --- sign in to the console, as a browser's form post does -------------------------------
jar=$work/cookies.txt
page=$(curl -fsS --max-time 10 -c "$jar" -b "$jar" "$base/console/login")
csrf=$(sed -n 's/.*name="_csrf" value="\([0-9a-f]*\)".*/\1/p' <<<"$page" | head -n1)
[[ -n $csrf ]] || die "no CSRF token on the sign-in page"
curl -fsS --max-time 30 -o /dev/null -c "$jar" -b "$jar" \
    --data-urlencode "_csrf=$csrf" --data-urlencode "email=$MERCHANT" --data-urlencode "password=$PASSWORD" \
    "$base/console/login" || die "console sign-in failed"
session=$(awk '$6 == "rampart_console" { print $7 }' "$jar")
[[ -n $session ]] || die "no console session cookie after sign-in"
auth="Cookie: rampart_console=$session"

first=$(curl -fsS --max-time 10 -H "$auth" "$base/console/payments")
[[ $first == *'Kursus las'* ]] || die "the payments page does not list payments"
payment=$(grep -o 'href="/console/payments/txn_[^"]*"' <<<"$first" | head -n1 | sed 's/href="\/console\/payments\/\([^"]*\)"/\1/')
# Follow "next page" 50 times: 2,500 payments deep.
deep=/console/payments
for _ in $(seq 50); do
    next=$(curl -fsS --max-time 10 -H "$auth" "$base$deep" | grep -o 'href="/console/payments?cursor=[^"]*"' | head -n1 \
        | sed 's/href="\([^"]*\)"/\1/; s/&amp;/\&/g')
    [[ -n $next ]] || break
    deep=$next
done
[[ $deep == *cursor=* ]] || die "no next-page link on the payments list"

print_machine
print_load
echo "data:     $PAYMENTS payments in one merchant tenant (SQLite), pages of 50"
echo

# Twice: with the load's connections (the server saturated), and with 4 (a few
# operators at once, the console's real load), where latency is the page's own cost.
for conns in "$CONNECTIONS" 4; do
    echo "--- $conns connections ---"
    run "health/$conns" /health "$work/report.lua" "$conns"
    run "console/home/$conns" /console/ "$work/report.lua" "$conns"
    run "payments/page1/$conns" /console/payments "$work/report.lua" "$conns"
    run "payments/deep/$conns" "$deep" "$work/report.lua" "$conns"
    run "payment/detail/$conns" "/console/payments/$payment" "$work/report.lua" "$conns"
    echo
done

rps[health]=${rps[health/$CONNECTIONS]}
for name in console/home payments/page1 payments/deep payment/detail; do
    print_ratio "$name/$CONNECTIONS"
done
