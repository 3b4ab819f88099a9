#!/usr/bin/env bash
# Throughput of card tokenization compared with the cheapest request the server has, and of
# envelope sealing compared with raw AES-256-GCM.
#
# 1. In process: runs `cargo run --release -q -p rampart-crypto --example seal_throughput`,
#    which measures envelope seal/open against raw AES-256-GCM on one thread, and prints
#    its output as it is.
# 2. Over HTTP: starts a fresh `rampart serve` on a temporary data directory and a free
#    loopback port, creates a merchant tenant and an API key with tokens:write, then runs
#    wrk against
#      GET  /health          (no auth, no database)
#      POST /api/v1/tokens   (API key check, HMAC fingerprint, envelope seal of the card
#                             number, a new token row and its audit event in the database)
#    with the same connections, threads and duration, and prints req/s, p50/p99 latency
#    and the ratio tokenize ÷ health. The ratio is the number to watch: it says what
#    tokenizing a card costs per request on this machine, independent of how fast the
#    machine is.
#
# Usage: bench/crypto.sh
# Environment:
#   RAMPART_BIN           binary to run (default: build and use target/release/rampart)
#   BENCH_DURATION        seconds of measured load per endpoint (default 10)
#   BENCH_CONNECTIONS     open connections (default 32)
#   BENCH_WARMUP          seconds of unmeasured load per endpoint before measuring (default 1; 0 = none)
#   BENCH_SKIP_INPROCESS  1 = skip the in-process part, and with it cargo (default 0)
#
# This is a benchmark, not a test: it fails only when the server cannot be started or
# answers with errors, never because a number is low.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly CARD=4111111111111111 # a Visa test number; it only ever exists on a throwaway data dir
readonly EXP_MONTH=12

read_load_settings
SKIP_INPROCESS=${BENCH_SKIP_INPROCESS:-0}
[[ $SKIP_INPROCESS == 0 || $SKIP_INPROCESS == 1 ]] || die "BENCH_SKIP_INPROCESS must be 0 or 1, got '$SKIP_INPROCESS'"

# The server refuses expired cards and expiries more than 20 years ahead; a few years from
# now stays valid whenever this runs (and is 2030 in 2026).
EXP_YEAR=$(($(date -u +%Y) + 4))
readonly EXP_YEAR

need_tool wrk wrk
need_tool curl curl
# cargo is not a Debian package we want to install behind anyone's back (rustup is the way).
if [[ -z ${RAMPART_BIN:-} || $SKIP_INPROCESS == 0 ]]; then
    command -v cargo >/dev/null 2>&1 \
        || die "'cargo' is not installed; install Rust (https://rustup.rs), or set RAMPART_BIN and BENCH_SKIP_INPROCESS=1"
fi

resolve_bin

# Compile the example now, so a build error stops the script before any load runs and the
# `cargo run` below only runs it.
readonly EXAMPLE=(--release -q -p rampart-crypto --example seal_throughput)
if ((SKIP_INPROCESS == 0)); then
    echo "building the in-process benchmark (cargo build ${EXAMPLE[*]})..." >&2
    (cd "$repo_root" && cargo build "${EXAMPLE[@]}") >&2 || die "cannot build the seal_throughput example"
fi

clear_rampart_env
prepare_workdir

# Before serve, so the tenant and the key are in the SQLite file when the server opens it.
# Both commands print the one value asked for on stdout and their messages on stderr.
tenant=$("$bin" tenants create --name Bench --kind merchant 2>"$work/setup.log") \
    || { cat "$work/setup.log" >&2; die "tenants create failed"; }
[[ -n $tenant && $tenant != *[[:space:]]* ]] || die "tenants create printed no tenant id: '$tenant'"
api_key=$("$bin" api-keys create --tenant "$tenant" --name bench --scopes tokens:write 2>"$work/setup.log") \
    || { cat "$work/setup.log" >&2; die "api-keys create failed"; }
[[ $api_key =~ ^rk_[A-Za-z0-9_-]+$ ]] || die "api-keys create printed no rk_ secret"
auth="Authorization: Bearer $api_key"

# --- report header -----------------------------------------------------------------------
print_machine
echo

# --- in process --------------------------------------------------------------------------
# Before the server starts, so the example has the CPUs to itself.
if ((SKIP_INPROCESS == 0)); then
    echo "in-process seal/open (cargo run ${EXAMPLE[*]}):"
    # The example may read no RAMPART_* setting, but keep its environment the caller's minus
    # the server's, and run it from the workspace.
    (cd "$repo_root" && env -u RAMPART_DATA_DIR -u RAMPART_LOG_LEVEL -u RAMPART_HTTP_SHUTDOWN_GRACE_SECS \
        cargo run "${EXAMPLE[@]}") || die "the seal_throughput example failed"
else
    echo "in-process seal/open: skipped (BENCH_SKIP_INPROCESS=1)"
fi
echo

start_server

# --- one tokenization ----------------------------------------------------------------------
body="{\"number\":\"$CARD\",\"exp_month\":$EXP_MONTH,\"exp_year\":$EXP_YEAR}"
# Check both endpoints answer correctly before loading them. The response holds a token and
# the last four digits, never the number, so it is safe to show when something is off.
status=$(curl -sS --max-time 10 -o "$work/tokenize.json" -w '%{http_code}' \
    -H "$auth" -H 'Content-Type: application/json' -d "$body" "$base/api/v1/tokens") \
    || die "POST /api/v1/tokens failed"
created=$(cat "$work/tokenize.json")
[[ $status == 201 ]] || die "POST /api/v1/tokens answered $status, expected 201: $created"
[[ $created == *'"token":"tok_'* && $created == *'"last4":"1111"'* ]] \
    || die "POST /api/v1/tokens did not return a tok_ token with last4 1111: $created"
[[ $(curl -fsS --max-time 10 "$base/health") == *'"status":"ok"'* ]] || die "GET /health is not ok"

# --- load --------------------------------------------------------------------------------
write_report_lua
# wrk takes one script: the POST is the report plus method, body and content type. The
# Authorization header comes from -H like for /health. Every request stores a new token.
{
    printf 'wrk.method = "POST"\n'
    printf 'wrk.body = %s\n' "'$body'"
    printf 'wrk.headers["Content-Type"] = "application/json"\n'
    cat "$work/report.lua"
} >"$work/tokenize.lua"

print_load
echo "request:  POST /api/v1/tokens with an API key (tokens:write), a new token row per request"
echo

# Both endpoints get the same Authorization header, so the requests on the wire are close in
# size and the difference is what the server does with them. /health ignores it.
run health /health "$work/report.lua"
run tokenize /api/v1/tokens "$work/tokenize.lua"

echo
print_ratio tokenize
