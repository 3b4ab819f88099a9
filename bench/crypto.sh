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

readonly THREADS=2
readonly CARD=4111111111111111 # a Visa test number; it only ever exists on a throwaway data dir
readonly EXP_MONTH=12

DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
WARMUP=${BENCH_WARMUP:-1}
SKIP_INPROCESS=${BENCH_SKIP_INPROCESS:-0}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
    echo "bench/crypto.sh: $*" >&2
    exit 1
}

for pair in "BENCH_DURATION:$DURATION" "BENCH_CONNECTIONS:$CONNECTIONS" "BENCH_WARMUP:$WARMUP"; do
    [[ ${pair#*:} =~ ^[0-9]+$ ]] || die "${pair%%:*} must be a whole number, got '${pair#*:}'"
done
# Bounded on purpose: a typo must not turn into an hour of load on a 2-core machine.
((DURATION >= 1 && DURATION <= 300)) || die "BENCH_DURATION must be 1..300 seconds"
((CONNECTIONS >= THREADS && CONNECTIONS <= 1000)) || die "BENCH_CONNECTIONS must be $THREADS..1000"
((WARMUP <= 60)) || die "BENCH_WARMUP must be 0..60 seconds"
[[ $SKIP_INPROCESS == 0 || $SKIP_INPROCESS == 1 ]] || die "BENCH_SKIP_INPROCESS must be 0 or 1, got '$SKIP_INPROCESS'"

# The server refuses expired cards and expiries more than 20 years ahead; a few years from
# now stays valid whenever this runs (and is 2030 in 2026).
EXP_YEAR=$(($(date -u +%Y) + 4))
readonly EXP_YEAR

# --- tools -------------------------------------------------------------------------------
# wrk and curl come from Debian packages. As root we can install them (what CI and the dev
# machines are); otherwise say exactly what is missing instead of failing half-way through.
need_tool() {
    local tool=$1 package=$2
    command -v "$tool" >/dev/null 2>&1 && return 0
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "installing $package (needed: $tool)..." >&2
        # The package lists may be empty on a fresh machine; update once, quietly.
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null \
            || die "could not install $package; install it and run again"
    else
        die "'$tool' is not installed; install it (Debian/Ubuntu: sudo apt-get install $package) and run again"
    fi
}
need_tool wrk wrk
need_tool curl curl
# cargo is not a Debian package we want to install behind anyone's back (rustup is the way).
if [[ -z ${RAMPART_BIN:-} || $SKIP_INPROCESS == 0 ]]; then
    command -v cargo >/dev/null 2>&1 \
        || die "'cargo' is not installed; install Rust (https://rustup.rs), or set RAMPART_BIN and BENCH_SKIP_INPROCESS=1"
fi

# --- binaries ----------------------------------------------------------------------------
# Numbers from a debug build say little about production, so the default is a release build.
if [[ -n ${RAMPART_BIN:-} ]]; then
    bin=$RAMPART_BIN
else
    echo "RAMPART_BIN not set: building the release binary (cargo build --release --bin rampart)..." >&2
    (cd "$repo_root" && cargo build --release --bin rampart) >&2
    bin=$repo_root/target/release/rampart
fi
# Accept a bare name on PATH too; print an absolute path so the report says what ran.
[[ $bin == */* ]] || bin=$(command -v "$bin") || die "not found on PATH: $RAMPART_BIN"
[[ -f $bin && -x $bin ]] || die "not an executable: $bin"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

# Compile the example now, so a build error stops the script before any load runs and the
# `cargo run` below only runs it.
readonly EXAMPLE=(--release -q -p rampart-crypto --example seal_throughput)
if ((SKIP_INPROCESS == 0)); then
    echo "building the in-process benchmark (cargo build ${EXAMPLE[*]})..." >&2
    (cd "$repo_root" && cargo build "${EXAMPLE[@]}") >&2 || die "cannot build the seal_throughput example"
fi

# Every RAMPART_* variable is configuration to the server, and an unknown key (RAMPART_BIN
# itself) stops it at start-up. A fresh, default-configured server is also the point of the
# benchmark, so none of the caller's RAMPART_* settings (a PostgreSQL URL, say) leak in.
while IFS= read -r name; do
    unset "$name"
done < <(compgen -e | grep '^RAMPART_' || true)

# --- temporary server --------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/rampart-bench.XXXXXX")
server_pid=
cleanup() {
    local status=$?
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        # The grace period is set to 2 s below; don't wait forever if it hangs anyway.
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if ((status != 0)) && [[ -s $work/server.log ]]; then
        echo "--- last lines of the server log ---" >&2
        tail -n 20 "$work/server.log" >&2
    fi
    cd /
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export RAMPART_DATA_DIR=$work/data
export RAMPART_LOG_LEVEL=warn            # per-request logging would be measured too
export RAMPART_HTTP_SHUTDOWN_GRACE_SECS=2 # so the trap's SIGTERM ends it quickly
mkdir -p "$RAMPART_DATA_DIR"
# The server reads ./rampart.toml when there is one; run from an empty directory instead.
cd "$work"

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
cpu_model=$(grep -m1 -E '^(model name|Model|cpu model)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
echo "machine:  $(nproc) CPUs, ${cpu_model:-unknown CPU model}"
echo "binary:   $bin ($("$bin" --version 2>/dev/null || echo 'version unknown'))"
[[ $bin == */debug/* ]] && echo "          (a debug build: numbers are not representative of release)"
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

# A free port: pick a random high one nobody listens on; if something grabs it between the
# check and the bind, the server exits ("cannot listen") and we try another.
port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
base=
for attempt in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" && continue
    RAMPART_HTTP_LISTEN=127.0.0.1:$port "$bin" serve >>"$work/server.log" 2>&1 &
    server_pid=$!
    # Migrations and the root key are created on first start; give a slow build 30 s.
    for _ in $(seq 300); do
        kill -0 "$server_pid" 2>/dev/null || break
        if curl -fsS --max-time 1 "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
            base=http://127.0.0.1:$port
            break
        fi
        sleep 0.1
    done
    [[ -n $base ]] && break
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
done
[[ -n $base ]] || die "the server did not come up (5 attempts)"

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
# wrk calls done() once at the end; print one machine-readable line rather than parsing its
# human report. Latencies come in microseconds.
cat >"$work/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT rps=%.1f requests=%d p50_ms=%.2f p99_ms=%.2f non2xx=%d socket_errors=%d\n",
    summary.requests / (summary.duration / 1e6), summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
LUA
# wrk takes one script: the POST is the report plus method, body and content type. The
# Authorization header comes from -H like for /health. Every request stores a new token.
{
    printf 'wrk.method = "POST"\n'
    printf 'wrk.body = %s\n' "'$body'"
    printf 'wrk.headers["Content-Type"] = "application/json"\n'
    cat "$work/report.lua"
} >"$work/tokenize.lua"

echo "server:   $base, SQLite in a fresh temp dir, log level warn"
echo "load:     $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2), $THREADS threads, $CONNECTIONS connections, ${DURATION}s per endpoint (+${WARMUP}s warm-up)"
echo "          wrk and the server share this machine's CPUs"
echo "request:  POST /api/v1/tokens with an API key (tokens:write), a new token row per request"
echo

# Both endpoints get the same Authorization header, so the requests on the wire are close in
# size and the difference is what the server does with them. /health ignores it.
declare -A rps
run() {
    local name=$1 path=$2 script=$3 out
    if ((WARMUP > 0)); then
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -H "$auth" -s "$script" "$base$path" >/dev/null
    fi
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -H "$auth" -s "$script" "$base$path") \
        || { echo "$out" >&2; die "wrk failed on $path"; }
    local line
    line=$(grep '^BENCH_RESULT ' <<<"$out") || { echo "$out" >&2; die "no result from wrk for $path"; }
    # Turn "key=value ..." into local variables.
    local rps_v requests p50_ms p99_ms non2xx socket_errors
    for kv in ${line#BENCH_RESULT }; do
        case ${kv%%=*} in
            rps) rps_v=${kv#*=} ;;
            requests) requests=${kv#*=} ;;
            p50_ms) p50_ms=${kv#*=} ;;
            p99_ms) p99_ms=${kv#*=} ;;
            non2xx) non2xx=${kv#*=} ;;
            socket_errors) socket_errors=${kv#*=} ;;
        esac
    done
    printf '%-10s %10s req/s  p50 %7s ms  p99 %7s ms  (%s requests, %s non-2xx, %s socket errors)\n' \
        "$name:" "$rps_v" "$p50_ms" "$p99_ms" "$requests" "$non2xx" "$socket_errors"
    # Error responses and failed connections are cheap and would flatter the numbers: a run
    # with any of them is not a result.
    kill -0 "$server_pid" 2>/dev/null || die "the server died during the run on $path"
    ((non2xx == 0)) || die "$path answered $non2xx requests with a non-2xx status"
    ((socket_errors == 0)) || die "$socket_errors socket errors or timeouts on $path"
    rps[$name]=$rps_v
}

run health /health "$work/report.lua"
run tokenize /api/v1/tokens "$work/tokenize.lua"

echo
awk -v tok="${rps[tokenize]}" -v health="${rps[health]}" 'BEGIN {
    printf "tokenize: %.0f req/s, health: %.0f req/s, ratio tokenize ÷ health = %.2f\n", tok, health, tok / health
}'
