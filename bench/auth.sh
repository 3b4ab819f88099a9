#!/usr/bin/env bash
# Throughput of an authenticated request compared with the cheapest request the server has.
#
# Starts a fresh `rampart serve` on a temporary data directory and a free loopback port,
# creates a platform admin, logs in once, then runs wrk against
#   GET /health            (no auth, no database)
#   GET /api/v1/users/me   (ES256 JWT check + session lookup in the database)
# with the same connections, threads and duration, and prints req/s, p50/p99 latency
# and the ratio users/me ÷ health. The ratio is the number to watch: it says what
# authentication costs per request on this machine, independent of how fast the machine is.
#
# Usage: bench/auth.sh
# Environment:
#   RAMPART_BIN        binary to run (default: build and use target/release/rampart)
#   BENCH_DURATION     seconds of measured load per endpoint (default 10)
#   BENCH_CONNECTIONS  open connections (default 32)
#   BENCH_WARMUP       seconds of unmeasured load per endpoint before measuring (default 1; 0 = none)
#
# This is a benchmark, not a test: it fails only when the server cannot be started or
# answers with errors, never because a number is low.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly EMAIL=admin@bench.example
# Strong enough for the default zxcvbn policy; it only ever exists on a throwaway data dir.
readonly PASSWORD='maple orbit canvas thunder river'

read_load_settings

need_tool wrk wrk
need_tool curl curl

resolve_bin
clear_rampart_env
prepare_workdir

# Before serve, so the admin is in the SQLite file when the server opens it.
printf '%s' "$PASSWORD" | "$bin" admin create --email "$EMAIL" >"$work/admin.log" 2>&1 \
    || { cat "$work/admin.log" >&2; die "admin create failed"; }

start_server

# --- one login -----------------------------------------------------------------------------
login=$(curl -fsS --max-time 10 -H 'content-type: application/json' \
    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" "$base/api/v1/auth/login") \
    || die "login failed"
# A JWT has no quotes or escapes, so sed is enough; no jq needed.
token=$(sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' <<<"$login")
expires_in=$(sed -n 's/.*"expires_in":\([0-9]*\).*/\1/p' <<<"$login")
[[ -n $token ]] || die "no access_token in the login response"
# Every request must stay authenticated until the end, or we would be timing 401s.
if [[ -n $expires_in ]] && ((WARMUP + DURATION + 30 > expires_in)); then
    die "the access token lives ${expires_in}s; keep BENCH_WARMUP + BENCH_DURATION under $((expires_in - 30))"
fi
auth="Authorization: Bearer $token"

# Check both endpoints answer correctly before loading them.
me=$(curl -fsS --max-time 10 -H "$auth" "$base/api/v1/users/me") || die "GET /api/v1/users/me failed"
[[ $me == *"\"email\":\"$EMAIL\""* ]] || die "GET /api/v1/users/me did not return $EMAIL: $me"
[[ $(curl -fsS --max-time 10 "$base/health") == *'"status":"ok"'* ]] || die "GET /health is not ok"

# --- load --------------------------------------------------------------------------------
write_report_lua

print_machine
print_load
echo

# Both endpoints get the same Authorization header, so the requests on the wire are the same
# size and the difference is what the server does with them. /health ignores it.
run health /health
run users/me /api/v1/users/me

echo
print_ratio users/me
