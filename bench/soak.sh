#!/usr/bin/env bash
# Memory under sustained load: does the server's RSS plateau, or grow?
#
# Starts a fresh `rampart serve` (release build, SQLite, the OWASP CRS v4.28.0 at PL1 when
# it is beside the repo), a merchant tenant and an API key, then POSTs payments with wrk
# for SOAK_SECS (each with a new card and customer: tokenize, fraud rules, the processor,
# audit, the webhook outbox), and then leaves the server idle for SOAK_IDLE_SECS. It
# samples the server's RSS (VmRSS) every SOAK_SAMPLE_SECS and prints the curve, then:
#   idle RSS before the load, the peak, the mean of the first and of the last fifth of the
#   load, their ratio (last ÷ first: about 1.00 for a plateau), the slope over the second
#   half of the load in MB per minute, and the RSS after the idle period.
#
# Usage: bench/soak.sh
# Environment:
#   RAMPART_BIN        binary to run (default: build and use target/release/rampart)
#   SOAK_SECS          seconds of load (default 600), 60..3600
#   SOAK_IDLE_SECS     seconds idle afterwards (default 60)
#   SOAK_SAMPLE_SECS   sampling interval (default 10)
#   SOAK_CONNECTIONS   wrk connections (default 16)
#   BENCH_CRS_DIR      CRS release directory (default ../shared/crs/v4.28.0 beside the repo;
#                      none there: the WAF is off and the report says so)
#
# A benchmark, not a test: it fails only when the server cannot start, dies, or answers
# errors.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SOAK_SECS=${SOAK_SECS:-600}
SOAK_IDLE_SECS=${SOAK_IDLE_SECS:-60}
SOAK_SAMPLE_SECS=${SOAK_SAMPLE_SECS:-10}
SOAK_CONNECTIONS=${SOAK_CONNECTIONS:-16}
for pair in "SOAK_SECS:$SOAK_SECS" "SOAK_IDLE_SECS:$SOAK_IDLE_SECS" \
    "SOAK_SAMPLE_SECS:$SOAK_SAMPLE_SECS" "SOAK_CONNECTIONS:$SOAK_CONNECTIONS"; do
    [[ ${pair#*:} =~ ^[0-9]+$ ]] || die "${pair%%:*} must be a whole number, got '${pair#*:}'"
done
((SOAK_SECS >= 60 && SOAK_SECS <= 3600)) || die "SOAK_SECS must be 60..3600"
((SOAK_SAMPLE_SECS >= 1 && SOAK_SAMPLE_SECS <= 60)) || die "SOAK_SAMPLE_SECS must be 1..60"
((SOAK_CONNECTIONS >= THREADS && SOAK_CONNECTIONS <= 1000)) || die "SOAK_CONNECTIONS must be $THREADS..1000"
CRS_DIR=${BENCH_CRS_DIR:-$repo_root/../shared/crs/v4.28.0}

need_tool wrk wrk
need_tool curl curl
resolve_bin
clear_rampart_env
prepare_workdir
write_report_lua
write_payment_lua

if [[ -d $CRS_DIR/rules ]]; then
    CRS_DIR=$(cd "$CRS_DIR" && pwd)
    export RAMPART_WAF_CRS_DIR=$CRS_DIR RAMPART_WAF_PARANOIA_LEVEL=1
    waf="CRS $CRS_DIR (PL1, blocking)"
else
    export RAMPART_WAF_CRS_DIR=none
    waf="off (no CRS at $CRS_DIR)"
fi

tenant=$("$bin" tenants create --name Soak --kind merchant 2>"$work/setup.log") \
    || { cat "$work/setup.log" >&2; die "tenants create failed"; }
api_key=$("$bin" api-keys create --tenant "$tenant" --name soak --scopes payments:write 2>"$work/setup.log") \
    || { cat "$work/setup.log" >&2; die "api-keys create failed"; }
start_server

rss_mb() {
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status" 2>/dev/null \
        || die "the server (pid $server_pid) is gone"
}

print_machine
echo "WAF:      $waf"
echo "load:     wrk, $THREADS threads, $SOAK_CONNECTIONS connections, POST /api/v1/payments for ${SOAK_SECS}s, then ${SOAK_IDLE_SECS}s idle; RSS every ${SOAK_SAMPLE_SECS}s"
echo

# Settle after start-up, then the idle baseline.
sleep 3
idle=$(rss_mb)
samples="$work/rss.tsv"
echo -e "t_s\tphase\trss_mb" >"$samples"
echo -e "0\tidle\t$idle" >>"$samples"

wrk -t"$THREADS" -c"$SOAK_CONNECTIONS" -d"${SOAK_SECS}s" --timeout 10s \
    -H "Authorization: Bearer $api_key" -s "$work/payment.lua" "$base/api/v1/payments" \
    >"$work/wrk.out" 2>&1 &
wrk_pid=$!
stop_wrk() { kill "$wrk_pid" 2>/dev/null || true; }
on_exit stop_wrk

start=$SECONDS
while kill -0 "$wrk_pid" 2>/dev/null; do
    sleep "$SOAK_SAMPLE_SECS"
    kill -0 "$wrk_pid" 2>/dev/null || break
    echo -e "$((SECONDS - start))\tload\t$(rss_mb)" >>"$samples"
done
wait "$wrk_pid" || die "wrk failed: $(cat "$work/wrk.out")"
load_end=$((SECONDS - start))
while ((SECONDS - start < load_end + SOAK_IDLE_SECS)); do
    sleep "$SOAK_SAMPLE_SECS"
    echo -e "$((SECONDS - start))\tafter\t$(rss_mb)" >>"$samples"
done

grep -o 'BENCH_RESULT.*' "$work/wrk.out" >"$work/result" || die "no result from wrk: $(cat "$work/wrk.out")"
field() { grep -o "$1=[0-9.]*" "$work/result" | cut -d= -f2; }
rps=$(field rps) requests=$(field requests) non2xx=$(field non2xx) errors=$(field socket_errors)
((non2xx == 0)) || die "$non2xx payments were not 2xx"
echo "payments: $requests in ${load_end}s ($rps/s), $errors socket errors"
echo
column -t "$samples"
echo
awk -F'\t' -v idle="$idle" -v sample="$SOAK_SAMPLE_SECS" '
    NR > 1 && $2 == "load" { n++; t[n] = $1; r[n] = $3; if ($3 > peak) peak = $3 }
    NR > 1 && $2 == "after" { after = $3 }
    END {
        if (n < 5) { print "too few samples under load"; exit 1 }
        k = int(n / 5); if (k < 1) k = 1
        for (i = 1; i <= k; i++) first += r[i]
        for (i = n - k + 1; i <= n; i++) last += r[i]
        first /= k; last /= k
        # Least-squares slope over the second half of the load.
        h = int(n / 2) + 1
        for (i = h; i <= n; i++) { m++; sx += t[i]; sy += r[i]; sxx += t[i] * t[i]; sxy += t[i] * r[i] }
        slope = (m * sxy - sx * sy) / (m * sxx - sx * sx) * 60
        printf "RSS: idle %.1f MB, peak %.1f MB, first fifth of the load %.1f MB, last fifth %.1f MB\n", idle, peak, first, last
        printf "plateau ratio last ÷ first fifth = %.2f; slope over the second half %+.2f MB/min\n", last / first, slope
        printf "after the idle period: %.1f MB\n", after
    }' "$samples"
