#!/usr/bin/env bash
# The full payment path under rising load, against GET /health in the same run.
#
# Starts a fresh `rampart serve` with the OWASP CRS v4.28.0 loaded (paranoia level 1), a
# merchant tenant and an API key with payments:write, then runs wrk at rising connection
# counts against
#   GET  /health            (no auth, no database; the WAF still runs)
#   POST /api/v1/payments   (edge + CRS on the JSON body, API-key auth, tokenize: HMAC
#                            fingerprint, envelope seal, a token row and its audit event;
#                            fraud velocity counts; the test connector; the payment row and
#                            its audit event)
# Every request pays with a new random Luhn-valid Visa number from a new customer address,
# so the fraud rules approve them and each one reaches the processor. Prints req/s and
# p50/p95/p99 per step and the ratio payments ÷ health at the highest step. On SQLite by
# default; with BENCH_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres) the
# same run follows on a fresh PostgreSQL database.
#
# Usage: bench/payments.sh
# Environment:
#   RAMPART_BIN         binary to run (default: build and use target/release/rampart)
#   BENCH_CRS_DIR       CRS release directory (default ../shared/crs/v4.28.0 beside the repo)
#   BENCH_STEPS         connection counts, rising (default "4 16 64")
#   BENCH_DURATION      seconds of measured load per step (default 10)
#   BENCH_WARMUP        seconds of unmeasured load before each step (default 1)
#   BENCH_DATABASE_URL  also run on PostgreSQL (a database is created and dropped)
#
# Not yet on the path: the webhook outbox (it needs the job queue). This is a benchmark,
# not a test: it fails only when the server cannot start or answers with errors.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

read_load_settings
STEPS=${BENCH_STEPS:-4 16 64}
for c in $STEPS; do
    [[ $c =~ ^[0-9]+$ ]] && ((c >= THREADS && c <= 1000)) || die "BENCH_STEPS holds '$c'; each must be $THREADS..1000"
done
CRS_DIR=${BENCH_CRS_DIR:-$repo_root/../shared/crs/v4.28.0}
[[ -d $CRS_DIR/rules ]] || die "no CRS at $CRS_DIR (set BENCH_CRS_DIR to a CRS v4 release)"
CRS_DIR=$(cd "$CRS_DIR" && pwd)
PG_URL=${BENCH_DATABASE_URL:-}

need_tool wrk wrk
need_tool curl curl
[[ -z $PG_URL ]] || need_tool psql postgresql-client
resolve_bin
clear_rampart_env
prepare_workdir
write_report_lua

write_payment_lua

bench_backend() {
    local label=$1
    tenant=$("$bin" tenants create --name Bench --kind merchant 2>"$work/setup.log") \
        || { cat "$work/setup.log" >&2; die "tenants create failed"; }
    api_key=$("$bin" api-keys create --tenant "$tenant" --name bench --scopes payments:write 2>"$work/setup.log") \
        || { cat "$work/setup.log" >&2; die "api-keys create failed"; }
    auth="Authorization: Bearer $api_key"
    start_server
    # One payment by hand: the answer must be a captured payment with last4, or the load
    # would measure errors.
    local year answer
    year=$(($(date -u +%Y) + 4))
    answer=$(curl -sS --max-time 10 -H "$auth" -H 'Content-Type: application/json' \
        -d "{\"amount\":10000,\"currency\":\"IDR\",\"card\":{\"number\":\"4111111111111111\",\"exp_month\":12,\"exp_year\":$year}}" \
        "$base/api/v1/payments")
    [[ $answer == *'"status":"captured"'* && $answer == *'"last4":"1111"'* ]] \
        || die "the first payment was not captured: $answer"
    echo "--- $label ---"
    for c in $STEPS; do
        run "health/$c" /health "$work/report.lua" "$c"
        run "payments/$c" /api/v1/payments "$work/payment.lua" "$c"
    done
    local top=${STEPS##* }
    rps[health]=${rps[health/$top]}
    print_ratio "payments/$top"
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    echo
}

export RAMPART_WAF_CRS_DIR=$CRS_DIR RAMPART_WAF_PARANOIA_LEVEL=1
# The load comes from one address with one key: limits would measure 429s.
export RAMPART_EDGE_RATE_LIMIT_ENABLED=false

print_machine
echo "CRS:      $CRS_DIR (paranoia level 1, blocking)"
echo "load:     $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2), $THREADS threads, connections rising: $STEPS; ${DURATION}s per step (+${WARMUP}s warm-up)"
echo "          wrk and the server share this machine's CPUs"
echo

bench_backend "SQLite (embedded)"

if [[ -n $PG_URL ]]; then
    db="rampart_bench_$$"
    psql "$PG_URL" -qc "CREATE DATABASE $db" >/dev/null || die "cannot create database $db"
    trap 'psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1; cleanup' EXIT
    export RAMPART_DATABASE_URL=${PG_URL%/*}/$db
    export RAMPART_DATA_DIR=$work/data-pg
    mkdir -p "$RAMPART_DATA_DIR"
    bench_backend "PostgreSQL ($(psql "$PG_URL" -Atc 'SHOW server_version' 2>/dev/null || echo '?'))"
fi
