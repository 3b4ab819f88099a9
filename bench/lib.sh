# shellcheck shell=bash
# Shared code of the bench/*.sh scripts; each one sources it right after `set -euo pipefail`:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sourcing only defines things and runs nothing. It provides
#   THREADS, repo_root         wrk threads (2) and the workspace root
#   die MESSAGE                print "bench/<script>.sh: MESSAGE" on stderr and exit 1
#   read_load_settings         BENCH_DURATION, BENCH_CONNECTIONS, BENCH_WARMUP into
#                              DURATION, CONNECTIONS, WARMUP, checked
#   need_tool TOOL PACKAGE     make sure TOOL is on PATH (installs PACKAGE as root)
#   install_package PACKAGE WHAT  install PACKAGE as root, or die saying WHAT is missing
#   resolve_bin                RAMPART_BIN, or a fresh release build, into an absolute $bin
#   clear_rampart_env          unset every RAMPART_* variable of the caller
#   prepare_workdir            a temporary $work with the server's environment, cleaned up
#                              (and the server stopped) on exit; cds into it
#   on_exit FUNCTION           have the exit cleanup call FUNCTION too (to stop other servers)
#   start_server               `$bin serve` on a free loopback port; sets $base and $server_pid
#   start_server_with LAUNCH   the same for what the function LAUNCH PORT starts in the background
#   stop_server                stop that server, if it runs
#   write_report_lua           $work/report.lua, the wrk script that prints one BENCH_RESULT line
#   print_machine, print_load  the report header: machine and binary; server and load settings
#   print_load_settings        the load part of print_load alone
#   wrk_load URL SCRIPT [ARG...]  warm up, then load URL with wrk; sets load_rps, load_requests,
#                              load_p50_ms, load_p95_ms, load_p99_ms, load_non2xx,
#                              load_socket_errors
#   run NAME PATH [SCRIPT] [CONNS] wrk_load $base$PATH (with the $auth header the caller sets;
#                              CONNS connections instead of CONNECTIONS), print one result
#                              line, store req/s in rps[NAME]
#   print_ratio NAME           the final line: rps[NAME] against rps[health]
#   write_payment_lua          $work/payment.lua: wrk POSTs one payment per request, each with
#                              a new Luhn-valid Visa number and customer (fraud rules approve)
# The scripts call them in the order they need; what they measure stays in the scripts.

readonly THREADS=2

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Messages name the script that sourced this file, the same wherever it is run from.
bench_script=bench/$(basename "${BASH_SOURCE[1]}")

die() {
    echo "$bench_script: $*" >&2
    exit 1
}

read_load_settings() {
    DURATION=${BENCH_DURATION:-10}
    CONNECTIONS=${BENCH_CONNECTIONS:-32}
    WARMUP=${BENCH_WARMUP:-1}
    local pair
    for pair in "BENCH_DURATION:$DURATION" "BENCH_CONNECTIONS:$CONNECTIONS" "BENCH_WARMUP:$WARMUP"; do
        [[ ${pair#*:} =~ ^[0-9]+$ ]] || die "${pair%%:*} must be a whole number, got '${pair#*:}'"
    done
    # Bounded on purpose: a typo must not turn into an hour of load on a 2-core machine.
    ((DURATION >= 1 && DURATION <= 300)) || die "BENCH_DURATION must be 1..300 seconds"
    ((CONNECTIONS >= THREADS && CONNECTIONS <= 1000)) || die "BENCH_CONNECTIONS must be $THREADS..1000"
    ((WARMUP <= 60)) || die "BENCH_WARMUP must be 0..60 seconds"
}

# --- tools -------------------------------------------------------------------------------
# wrk and curl come from Debian packages. As root we can install them (what CI and the dev
# machines are); otherwise say exactly what is missing instead of failing half-way through.
need_tool() {
    local tool=$1 package=$2
    command -v "$tool" >/dev/null 2>&1 && return 0
    install_package "$package" "'$tool'"
}

install_package() {
    local package=$1 what=$2
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "installing $package (needed: $what)..." >&2
        # The package lists may be empty on a fresh machine; update once, quietly.
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null \
            || die "could not install $package; install it and run again"
    else
        die "$what is not installed; install it (Debian/Ubuntu: sudo apt-get install $package) and run again"
    fi
}

# --- binary ------------------------------------------------------------------------------
# Numbers from a debug build say little about production, so the default is a release build.
resolve_bin() {
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
}

# Every RAMPART_* variable is configuration to the server, and an unknown key (RAMPART_BIN
# itself) stops it at start-up. A fresh, default-configured server is also the point of the
# benchmark, so none of the caller's RAMPART_* settings (a PostgreSQL URL, say) leak in.
clear_rampart_env() {
    local name
    while IFS= read -r name; do
        unset "$name"
    done < <(compgen -e | grep '^RAMPART_' || true)
}

# --- temporary server --------------------------------------------------------------------
server_pid=
stop_server() {
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
    server_pid=
}

exit_hooks=()
on_exit() { exit_hooks+=("$1"); }

cleanup() {
    local status=$? hook
    stop_server
    for hook in "${exit_hooks[@]}"; do
        "$hook" || true
    done
    if ((status != 0)) && [[ -s $work/server.log ]]; then
        echo "--- last lines of the server log ---" >&2
        tail -n 20 "$work/server.log" >&2
    fi
    cd /
    rm -rf "$work"
    exit "$status"
}

prepare_workdir() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/rampart-bench.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    export RAMPART_DATA_DIR=$work/data
    export RAMPART_LOG_LEVEL=warn            # per-request logging would be measured too
    export RAMPART_HTTP_SHUTDOWN_GRACE_SECS=2 # so the trap's SIGTERM ends it quickly
    # One client at tens of thousands of requests a second is what a benchmark is, and the
    # per-IP limit would answer most of them 429.
    export RAMPART_EDGE_RATE_LIMIT_ENABLED=false
    mkdir -p "$RAMPART_DATA_DIR"
    # The server reads ./rampart.toml when there is one; run from an empty directory instead.
    cd "$work"
}

# A free port: pick a random high one nobody listens on; if something grabs it between the
# check and the bind, the server exits ("cannot listen") and we try another.
port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local port
    for _ in $(seq 20); do
        port=$((20000 + RANDOM % 40000))
        port_in_use "$port" || { echo "$port"; return 0; }
    done
    die "found no free port"
}

# A LAUNCH starts a server on port $1 in the background, logging to $work/server.log, and
# sets $server_pid. This one starts the whole server, configured through the environment.
launch_serve() {
    RAMPART_HTTP_LISTEN=127.0.0.1:$1 "$bin" serve >>"$work/server.log" 2>&1 &
    server_pid=$!
}

start_server() { start_server_with launch_serve; }

start_server_with() {
    local launch=$1 port
    base=
    for _ in 1 2 3 4 5; do
        port=$(free_port)
        "$launch" "$port"
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
}

# --- load --------------------------------------------------------------------------------
# wrk calls done() once at the end; print one machine-readable line rather than parsing its
# human report. Latencies come in microseconds.
write_report_lua() {
    cat >"$work/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT rps=%.1f requests=%d p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f non2xx=%d socket_errors=%d\n",
    summary.requests / (summary.duration / 1e6), summary.requests,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
LUA
}

# --- report ------------------------------------------------------------------------------
print_machine() {
    local cpu_model
    cpu_model=$(grep -m1 -E '^(model name|Model|cpu model)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
    echo "machine:  $(nproc) CPUs, ${cpu_model:-unknown CPU model}"
    echo "binary:   $bin ($("$bin" --version 2>/dev/null || echo 'version unknown'))"
    # An if, not `[[ ]] && echo`: as a function's last command a false test would be its
    # status, and set -e would stop the script on a release binary.
    if [[ $bin == */debug/* ]]; then
        echo "          (a debug build: numbers are not representative of release)"
    fi
}

print_load() {
    echo "server:   $base, SQLite in a fresh temp dir, log level warn, rate limits off"
    print_load_settings
}

print_load_settings() {
    echo "load:     $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2), $THREADS threads, $CONNECTIONS connections, ${DURATION}s per endpoint (+${WARMUP}s warm-up)"
    echo "          wrk and the server share this machine's CPUs"
}

wrk_load() {
    local url=$1 script=$2 out line kv
    shift 2
    if ((WARMUP > 0)); then
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "$@" -s "$script" "$url" >/dev/null
    fi
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "$@" -s "$script" "$url") \
        || { echo "$out" >&2; die "wrk failed on $url"; }
    line=$(grep '^BENCH_RESULT ' <<<"$out") || { echo "$out" >&2; die "no result from wrk for $url"; }
    # Turn "key=value ..." into load_* variables.
    load_rps='' load_requests='' load_p50_ms='' load_p95_ms='' load_p99_ms='' load_non2xx='' load_socket_errors=''
    for kv in ${line#BENCH_RESULT }; do
        case ${kv%%=*} in
            rps) load_rps=${kv#*=} ;;
            requests) load_requests=${kv#*=} ;;
            p50_ms) load_p50_ms=${kv#*=} ;;
            p95_ms) load_p95_ms=${kv#*=} ;;
            p99_ms) load_p99_ms=${kv#*=} ;;
            non2xx) load_non2xx=${kv#*=} ;;
            socket_errors) load_socket_errors=${kv#*=} ;;
        esac
    done
}

declare -A rps
run() {
    local name=$1 path=$2 script=${3:-$work/report.lua}
    # wrk_load reads CONNECTIONS; this one run may use another count.
    local CONNECTIONS=${4:-$CONNECTIONS}
    wrk_load "$base$path" "$script" -H "$auth"
    printf '%-14s %10s req/s  p50 %7s ms  p95 %7s ms  p99 %7s ms  (%s requests, %s non-2xx, %s socket errors)\n' \
        "$name:" "$load_rps" "$load_p50_ms" "$load_p95_ms" "$load_p99_ms" "$load_requests" "$load_non2xx" "$load_socket_errors"
    # Error responses and failed connections are cheap and would flatter the numbers: a run
    # with any of them is not a result.
    kill -0 "$server_pid" 2>/dev/null || die "the server died during the run on $path"
    ((load_non2xx == 0)) || die "$path answered $load_non2xx requests with a non-2xx status"
    ((load_socket_errors == 0)) || die "$load_socket_errors socket errors or timeouts on $path"
    rps[$name]=$load_rps
}

print_ratio() {
    local name=$1
    awk -v name="$name" -v it="${rps[$name]}" -v health="${rps[health]}" 'BEGIN {
        printf "%s: %.0f req/s, health: %.0f req/s, ratio %s ÷ health = %.2f\n", name, it, health, name, it / health
    }'
}

# --- the payment request -------------------------------------------------------------------
# One request per call: a fresh card (Luhn-valid Visa) and a fresh customer address, so the
# fraud rules approve every one and each reaches the processor. Needs write_report_lua first.
write_payment_lua() {
cat >"$work/payment.lua" <<'LUA'
local year = tonumber(os.date("!%Y")) + 4
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
local function card()
  local d = {4}
  for i = 2, 15 do d[i] = math.random(0, 9) end
  local sum = 0
  for i = 15, 1, -1 do
    local v = d[i]
    if (16 - i) % 2 == 1 then v = v * 2; if v > 9 then v = v - 9 end end
    sum = sum + v
  end
  d[16] = (10 - sum % 10) % 10
  return table.concat(d)
end
request = function()
  local ip = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254))
  local body = string.format(
    '{"amount":%d,"currency":"IDR","card":{"number":"%s","exp_month":12,"exp_year":%d,"cvc":"123"},' ..
    '"description":"Kursus las dasar","customer":{"email":"buyer%d@example.id","ip":"%s","country":"US"}}',
    math.random(10000, 500000), card(), year, math.random(1, 1e9), ip)
  -- nil headers: wrk's own (Host, and the Authorization given with -H) plus ours below.
  return wrk.format("POST", "/api/v1/payments", nil, body)
end
wrk.headers["Content-Type"] = "application/json"
LUA
cat "$work/report.lua" >>"$work/payment.lua"
}
