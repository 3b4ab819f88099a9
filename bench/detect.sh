#!/usr/bin/env bash
# Detection keeping up with the WAF: security events the detector evaluates per second
# with the full built-in rule set, against the raw rate at which the server appends
# security events to the database, measured in the same run on the same load.
#
# Runs two fresh `rampart serve` processes in turn (SQLite, temp data dirs) under the same
# wrk load of requests the WAF refuses: a card number in the URL, which Rampart's own rule
# blocks (the cheapest block there is, so the most events a second; with BENCH_CRS_DIR set,
# a SQLi GET refused by the OWASP CRS instead). Each refusal is one `waf_blocked` event.
#   1. baseline: detection.enabled = false; events stored per second (the raw append rate)
#   2. detector: the same, with the detector on; events stored per second again, events
#      evaluated per second (rampart_detection_events_total over the load and the catch-up
#      after it), the detector lag (rampart_detection_lag_seconds, sampled every second;
#      the issue's aim: under 5 s), and how long it took to evaluate the last event.
# Prints the detector's rate as a ratio of the raw append rate.
#
# Usage: bench/detect.sh
# Environment:
#   RAMPART_BIN        binary to run (default: build and use target/release/rampart)
#   BENCH_DURATION     seconds of load per run (default 10)
#   BENCH_CONNECTIONS  open connections (default 32)
#   BENCH_CRS_DIR      a CRS release directory (e.g. /work/shared/crs/v4.28.0): SQLi blocks
#
# This is a benchmark, not a test: it fails only when the server cannot be started or the
# load is not refused by the WAF, never because a number is low.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

read_load_settings
need_tool wrk wrk
need_tool curl curl
need_tool python3 python3
resolve_bin
clear_rampart_env
prepare_workdir
write_report_lua

CRS=${BENCH_CRS_DIR:-}
if [[ -n $CRS ]]; then
    [[ -f $CRS/crs-setup.conf.example || -d $CRS/rules ]] || die "BENCH_CRS_DIR is not a CRS release: $CRS"
    export RAMPART_WAF_CRS_DIR=$CRS
    path="/api/v1/users/me?id=1%27%20OR%20%271%27%3D%271"
    what="SQLi GET refused by the OWASP CRS ($CRS)"
else
    export RAMPART_WAF_CRS_DIR=none
    path="/api/v1/users/me?card=4111111111111111"
    what="card number in the URL, refused by Rampart's own WAF rule"
fi
export RAMPART_JOBS_POLL_INTERVAL_MS=200

stored_events() {
    python3 - "$RAMPART_DATA_DIR/rampart.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=30)
print(db.execute("SELECT COUNT(*) FROM security_events WHERE event = 'waf_blocked'").fetchone()[0])
PY
}

metric() {
    curl -fsS --max-time 5 "$base/metrics" | awk -v name="$1" '$1 == name { print $2; found = 1 } END { if (!found) print 0 }'
}

# One run: load, then (with the detector) wait for it to evaluate every stored event.
# Sets run_requests, run_stored, run_append_rate, and with the detector run_evaluated,
# run_detect_rate, run_max_lag, run_catchup.
measure() {
    local detect=$1 samples=$work/lag.$1 sampler started ended
    export RAMPART_DETECTION_ENABLED=$detect
    rm -rf "$RAMPART_DATA_DIR" && mkdir -p "$RAMPART_DATA_DIR"
    : >"$work/server.log"
    start_server
    local check
    check=$(curl -s -o /dev/null -w '%{http_code}' "$base$path")
    [[ $check == 400 || $check == 403 ]] || die "the WAF did not refuse $path (answered $check)"
    : >"$samples"
    (
        while sleep 1; do
            metric rampart_detection_lag_seconds >>"$samples" 2>/dev/null || true
        done
    ) &
    sampler=$!
    started=$(date +%s.%N)
    local WARMUP=0
    wrk_load "$base$path" "$work/report.lua"
    ended=$(date +%s.%N)
    run_requests=$load_requests
    # The events of the last batch reach the database within a moment of the load's end.
    sleep 1
    run_stored=$(stored_events)
    run_dropped=$(metric rampart_security_events_dropped_total)
    run_append_rate=$(awk -v n="$run_stored" -v a="$started" -v b="$ended" 'BEGIN { printf "%.0f", n / (b - a) }')
    if [[ $detect == true ]]; then
        local evaluated=0
        for _ in $(seq 600); do
            evaluated=$(metric rampart_detection_events_total)
            awk -v e="$evaluated" -v s="$run_stored" 'BEGIN { exit !(e >= s) }' && break
            sleep 0.1
        done
        local done_at
        done_at=$(date +%s.%N)
        run_evaluated=$evaluated
        run_catchup=$(awk -v a="$ended" -v b="$done_at" 'BEGIN { printf "%.1f", b - a }')
        run_detect_rate=$(awk -v n="$evaluated" -v a="$started" -v b="$done_at" 'BEGIN { printf "%.0f", n / (b - a) }')
        run_max_lag=$(sort -n "$samples" | tail -n1)
        run_alerts=$(curl -fsS --max-time 5 "$base/metrics" | awk '$1 ~ /^rampart_alerts_total/ { n += $2 } END { print n + 0 }')
    fi
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    kill -0 "$server_pid" 2>/dev/null || die "the server died during the run"
    stop_server
}

print_machine
echo "server:   SQLite in a fresh temp dir each run, log level warn, rate limits off"
print_load_settings
echo "events:   one waf_blocked per request: $what"
echo

measure false
base_rate=$run_append_rate
printf '%-10s %8s requests refused, %8s events stored (%s dropped), append %7s events/s\n' \
    "baseline:" "$run_requests" "$run_stored" "$run_dropped" "$base_rate"
measure true
printf '%-10s %8s requests refused, %8s events stored (%s dropped), append %7s events/s\n' \
    "detector:" "$run_requests" "$run_stored" "$run_dropped" "$run_append_rate"
printf '%-10s %8s events evaluated, %7s events/s; max lag %ss; last event evaluated %ss after the load; %s alerts raised\n' \
    "" "$run_evaluated" "$run_detect_rate" "${run_max_lag:-0}" "$run_catchup" "$run_alerts"
echo
awk -v d="$run_detect_rate" -v b="$base_rate" -v a="$run_append_rate" 'BEGIN {
    printf "detector evaluated ÷ raw append rate (baseline run) = %.2f\n", d / b
    printf "append rate with the detector ÷ without            = %.2f\n", a / b
}'
