#!/usr/bin/env bash
# Throughput of Rampart's edge proxy running the OWASP Core Rule Set, compared with nginx +
# ModSecurity v3 running the same rules in front of the same upstream, in the same run.
#
# Starts, each on a free loopback port:
#   upstream           nginx without ModSecurity, 200 "ok" to every method and path
#   nginx+ModSecurity  nginx with Debian's libnginx-mod-http-modsecurity, ModSecurity's
#                      recommended configuration (SecRuleEngine On, audit log off), proxying
#                      to the upstream over kept-alive connections
#   Rampart            `rampart edge --listen ... --upstream ...` proxying to the upstream
# Both WAFs load the same files: crs-setup.conf (a copy of CRS's crs-setup.conf.example) and
# CRS's rules/*.conf, at paranoia level 1, blocking on the anomaly score (CRS's only mode).
# nginx gets as many worker processes as the machine has CPUs, which is what tokio's
# default runtime gives Rampart in worker threads.
#
# First it checks the verdicts: each WAF must answer 200 to the benign GET and POST and 403
# to the SQL injection, or the script prints what each answered and stops, because a
# throughput comparison means nothing unless both do the same work. Then it runs wrk with
# the same settings, workload by workload, against the upstream directly, then
# nginx+ModSecurity, then Rampart (one WAF running at a time; each is started fresh for
# each workload):
#   benign GET   GET /index.html?page=2&sort=name
#   form POST    POST /checkout, a 1 KB urlencoded body of ordinary form fields
#   SQLi GET     GET /?id=1'%20OR%20'1'='1 (blocked by CRS at paranoia level 1: 403)
# and prints req/s and p50/p99 latency per run, then a table with the ratio
# Rampart ÷ ModSecurity per workload. The ratio is the number to watch; the upstream column
# says how far below the machine's limit both are.
#
# Usage: bench/waf.sh
# Environment:
#   RAMPART_BIN        binary to run (default: build and use target/release/rampart)
#   BENCH_CRS_DIR      the CRS release (crs-setup.conf.example and rules/; default
#                      ../shared/crs/v4.28.0 beside the workspace)
#   BENCH_DURATION     seconds of measured load per run (default 10)
#   BENCH_CONNECTIONS  open connections (default 32)
#   BENCH_WARMUP       seconds of unmeasured load per run before measuring (default 1; 0 = none)
#
# Needs wrk, curl, nginx and libnginx-mod-http-modsecurity; as root on Debian/Ubuntu it
# installs those that are missing. This is a benchmark, not a test: it fails when a server
# cannot be started, answers with errors or gives a wrong verdict, never because a number
# is low.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# nginx lives in /usr/sbin, which is not on a normal user's PATH on Debian.
PATH=$PATH:/usr/sbin

readonly CRS_DIR=${BENCH_CRS_DIR:-$repo_root/../shared/crs/v4.28.0}
CPUS=$(nproc)
readonly CPUS

# What a browser sends. A name in Host, not 127.0.0.1:port: CRS scores a numeric Host
# (rule 920350), which real traffic does not carry. Both WAFs, the verdict checks and wrk
# get exactly these headers.
readonly HEADERS=(
    'Host: www.example.com'
    'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'
    'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
)
# A checkout form: ordinary fields and a free-text note, 1005 bytes, nothing CRS flags.
FORM_BODY='csrf_token=6f1c2a9e4b7d4e0f8a3c5b2d9e1f7a6c&first_name=Ada&last_name=Lovelace'
FORM_BODY+='&email=ada.lovelace%40example.com&phone=%2B44+20+7946+0958&company=Analytical+Engines+Ltd'
FORM_BODY+='&vat_number=GB123456789&street=12+St+James+Square&city=London&postcode=SW1Y+4JH&country=GB'
FORM_BODY+='&delivery=standard&gift_wrap=no&newsletter=yes&quantity=3&sku=AE-1843-NOTES&coupon=WINTER25'
FORM_BODY+='&notes=Please+leave+the+parcel+with+the+concierge+at+the+front+desk+if+nobody+answers+the+door.'
FORM_BODY+='+The+building+has+a+blue+door+and+a+brass+knocker.+Deliveries+are+accepted+on+weekdays'
FORM_BODY+='+between+nine+in+the+morning+and+six+in+the+evening.+If+the+concierge+is+away%2C+call+the'
FORM_BODY+='+phone+number+above+and+we+will+come+down+to+collect+it.+Thank+you+for+the+quick+service'
FORM_BODY+='+last+time%2C+the+notebooks+arrived+in+perfect+condition+and+the+packaging+was+recyclable.'
FORM_BODY+='&billing_same_as_shipping=yes&payment_method=invoice&terms_accepted=yes&referrer=friend'
FORM_BODY+='&preferred_contact=email&order_reference=WEB-2024-000187&locale=en-GB'
FORM_BODY+='&timezone=Europe%2FLondon&currency=GBP&remember_me=yes'
readonly FORM_BODY

readonly WORKLOADS=(get post sqli)
declare -A label=([get]='benign GET' [post]='form POST' [sqli]='SQLi GET')
declare -A method=([get]=GET [post]=POST [sqli]=GET)
declare -A path=([get]='/index.html?page=2&sort=name' [post]=/checkout [sqli]="/?id=1'%20OR%20'1'='1")
declare -A verdict=([get]=200 [post]=200 [sqli]=403)

readonly TARGETS=(upstream modsec rampart)
declare -A title=([upstream]='upstream direct' [modsec]='nginx+ModSecurity' [rampart]='Rampart edge' [rampart_off]='Rampart, WAF off')

# ModSecurity's recommended configuration (upstream's modsecurity.conf-recommended) as
# packages ship it; the first that exists is used. Debian 12 has it only in the nginx
# module's package.
readonly MODSEC_RECOMMENDED=(
    /etc/modsecurity/modsecurity.conf-recommended
    /usr/share/nginx/docs/modsecurity/modsecurity.conf
    /etc/nginx/modsecurity.conf
)

read_load_settings

need_tool wrk wrk
need_tool curl curl
need_tool nginx nginx
modules_path=$(nginx -V 2>&1 | grep -o -- '--modules-path=[^ ]*' | cut -d= -f2 || true)
readonly MODSEC_MODULE=${modules_path:-/usr/lib/nginx/modules}/ngx_http_modsecurity_module.so
[[ -f $MODSEC_MODULE ]] || install_package libnginx-mod-http-modsecurity "the nginx ModSecurity module"
[[ -f $MODSEC_MODULE ]] || die "no ModSecurity module at $MODSEC_MODULE after installing it"

[[ -f $CRS_DIR/crs-setup.conf.example && -d $CRS_DIR/rules ]] \
    || die "no CRS at $CRS_DIR (crs-setup.conf.example and rules/); set BENCH_CRS_DIR"
crs_dir=$(cd "$CRS_DIR" && pwd)
crs_version=$(grep -o -m1 "OWASP_CRS/[0-9.]*" "$crs_dir/crs-setup.conf.example" | cut -d/ -f2 || true)

recommended=
for candidate in "${MODSEC_RECOMMENDED[@]}"; do
    [[ -f $candidate ]] && { recommended=$candidate; break; }
done
[[ -n $recommended ]] || die "found no ModSecurity recommended configuration (looked at ${MODSEC_RECOMMENDED[*]})"

resolve_bin
"$bin" edge --help >/dev/null 2>&1 || die "$bin has no 'edge' command (the proxy); build a newer one"
clear_rampart_env
prepare_workdir

# --- the rules both WAFs load --------------------------------------------------------------
# One directory both read: the setup file copied once, the rules themselves not copied.
mkdir -p "$work/crs"
cp "$crs_dir/crs-setup.conf.example" "$work/crs/crs-setup.conf"
ln -s "$crs_dir/rules" "$work/crs/rules"

# --- nginx -------------------------------------------------------------------------------
# Each instance runs from its own prefix under $work: configuration, pid file, error log
# and temp paths there, access log off. nginx daemonizes; its pid file is how we stop it.
declare -A url

nginx_common() {
    cat <<EOF
worker_processes $CPUS;
worker_rlimit_nofile 8192;
pid nginx.pid;
error_log error.log;
events { worker_connections 4096; }
EOF
}

nginx_http_common() {
    cat <<'EOF'
    access_log off;
    client_body_temp_path client_body;
    proxy_temp_path proxy;
    fastcgi_temp_path fastcgi;
    uwsgi_temp_path uwsgi;
    scgi_temp_path scgi;
EOF
}

write_upstream_conf() {
    nginx_common
    cat <<EOF
http {
$(nginx_http_common)
    server {
        listen 127.0.0.1:$1 default_server;
        location / {
            default_type text/plain;
            return 200 "ok\n";
        }
    }
}
EOF
}

# The usual reverse-proxy setup: HTTP/1.1 to the upstream over a pool of kept-alive
# connections (Rampart's client keeps its connections too).
write_modsec_conf() {
    cat <<EOF
load_module $MODSEC_MODULE;
$(nginx_common)
http {
$(nginx_http_common)
    upstream app {
        server ${url[upstream]#http://};
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$1 default_server;
        modsecurity on;
        modsecurity_rules_file $work/modsec/main.conf;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

# start_nginx NAME WRITE_CONF: nginx from $work/NAME on a free port; sets url[NAME].
start_nginx() {
    local name=$1 write_conf=$2 prefix=$work/$1 port
    mkdir -p "$prefix"
    for _ in 1 2 3 4 5; do
        port=$(free_port)
        "$write_conf" "$port" >"$prefix/nginx.conf"
        # What nginx says before it has opened its error log (ModSecurity's rule count, say).
        if nginx -p "$prefix/" -c nginx.conf 2>>"$prefix/error.log"; then
            for _ in $(seq 100); do
                if port_in_use "$port"; then
                    url[$name]=http://127.0.0.1:$port
                    return 0
                fi
                sleep 0.1
            done
            tail -n 20 "$prefix/error.log" >&2
            die "nginx ($name) started but does not listen on $port"
        fi
        # Someone took the port between the check and the bind: try another.
        grep -q 'Address already in use' "$prefix/error.log" || break
    done
    tail -n 20 "$prefix/error.log" >&2
    die "nginx ($name) did not start"
}

stop_nginx() {
    local prefix=$work/$1 pid
    [[ -s $prefix/nginx.pid ]] || return 0
    pid=$(<"$prefix/nginx.pid")
    kill -TERM "$pid" 2>/dev/null || true
    # nginx removes its pid file when it has exited.
    for _ in $(seq 50); do
        [[ -e $prefix/nginx.pid ]] || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$prefix/nginx.pid"
}

stop_all_nginx() {
    stop_nginx modsec
    stop_nginx upstream
}
on_exit stop_all_nginx

# ModSecurity: the recommended file with the engine on and the audit log off (only the
# engine and the log lines change), then the CRS setup file and the rules.
mkdir -p "$work/modsec"
sed -e 's/^SecRuleEngine .*/SecRuleEngine On/' \
    -e 's/^SecAuditEngine .*/SecAuditEngine Off/' \
    -e "s|^SecAuditLog .*|SecAuditLog $work/modsec/audit.log|" \
    "$recommended" >"$work/modsec/modsecurity.conf"
if ! grep -qx 'SecRuleEngine On' "$work/modsec/modsecurity.conf" \
    || ! grep -qx 'SecAuditEngine Off' "$work/modsec/modsecurity.conf"; then
    die "$recommended has no SecRuleEngine/SecAuditEngine line to set"
fi
# It names unicode.mapping relative to itself.
if [[ -f $(dirname "$recommended")/unicode.mapping ]]; then
    cp "$(dirname "$recommended")/unicode.mapping" "$work/modsec/"
fi
cat >"$work/modsec/main.conf" <<EOF
Include $work/modsec/modsecurity.conf
Include $work/crs/crs-setup.conf
# Paranoia level 1, as crs-setup.conf.example's rule 900000 sets it when uncommented (it is
# also CRS's default). Rampart sets the same variable, from RAMPART_WAF_PARANOIA_LEVEL=1,
# in a rule of its own ahead of the setup file.
SecAction "id:900000,phase:1,pass,t:none,nolog,tag:'OWASP_CRS',setvar:tx.blocking_paranoia_level=1"
Include $work/crs/rules/*.conf
EOF

# --- Rampart -----------------------------------------------------------------------------
export RAMPART_WAF_CRS_DIR=$work/crs
export RAMPART_WAF_PARANOIA_LEVEL=1
export RAMPART_WAF_MODE=blocking
# prepare_workdir has turned rate limits off and set log level warn.
# tokio's default, said out loud: one worker thread per CPU, like nginx's processes above.
export TOKIO_WORKER_THREADS=$CPUS

# The same rule set the proxy will build, loaded once to count it (and to fail early).
rampart_check=$("$bin" waf check 2>&1) || { echo "$rampart_check" >&2; die "rampart waf check failed"; }
# Its first line is "N rules loaded"; the next names the CRS release.
rampart_rules=$(grep -m1 ' rules loaded$' <<<"$rampart_check" || echo '? rules loaded')

launch_edge() {
    "$bin" edge --listen "127.0.0.1:$1" --upstream "${url[upstream]}" >>"$work/server.log" 2>&1 &
    server_pid=$!
}

start_waf() {
    case $1 in
        modsec) start_nginx modsec write_modsec_conf ;;
        rampart)
            start_server_with launch_edge
            url[rampart]=$base
            ;;
        # The same proxy with no rule at all: what the WAF costs on top of proxying.
        rampart_off)
            RAMPART_WAF_MODE=off
            start_server_with launch_edge
            RAMPART_WAF_MODE=blocking
            url[rampart_off]=$base
            ;;
    esac
}

stop_waf() {
    case $1 in
        modsec) stop_nginx modsec ;;
        rampart | rampart_off) stop_server ;;
    esac
}

waf_running() {
    case $1 in
        upstream) [[ -e $work/upstream/nginx.pid ]] && kill -0 "$(<"$work/upstream/nginx.pid")" 2>/dev/null ;;
        modsec) [[ -e $work/modsec/nginx.pid ]] && kill -0 "$(<"$work/modsec/nginx.pid")" 2>/dev/null ;;
        rampart | rampart_off) [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null ;;
    esac
}

# --- requests ----------------------------------------------------------------------------
printf '%s' "$FORM_BODY" >"$work/form.txt"
header_args=()
for header in "${HEADERS[@]}"; do
    header_args+=(-H "$header")
done

# status TARGET WORKLOAD: the HTTP status TARGET answers to WORKLOAD's request (000: none).
status() {
    local args=(-sS -o /dev/null -w '%{http_code}' --max-time 10 "${header_args[@]}")
    if [[ ${method[$2]} == POST ]]; then
        args+=(-H 'Content-Type: application/x-www-form-urlencoded' --data-binary "@$work/form.txt")
    fi
    curl "${args[@]}" "${url[$1]}${path[$2]}" 2>/dev/null || true
}

# check_verdicts TARGET: store TARGET's answers in answer[TARGET/WORKLOAD]; false if any
# differs from what is expected of it.
declare -A answer
check_verdicts() {
    local target=$1 w expected ok=0
    for w in "${WORKLOADS[@]}"; do
        answer[$target/$w]=$(status "$target" "$w")
        expected=${verdict[$w]}
        [[ $target == upstream ]] && expected=200
        [[ ${answer[$target/$w]} == "$expected" ]] || ok=1
    done
    return $ok
}

write_report_lua
{
    printf 'wrk.method = "POST"\n'
    printf 'wrk.body = [[%s]]\n' "$FORM_BODY"
    printf 'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
    cat "$work/report.lua"
} >"$work/post.lua"

# measure TARGET WORKLOAD: load it with wrk, print one line, store req/s in rps[TARGET/WORKLOAD].
measure() {
    local target=$1 w=$2 script=$work/report.lua expected_non2xx=0
    [[ ${method[$w]} == POST ]] && script=$work/post.lua
    wrk_load "${url[$target]}${path[$w]}" "$script" "${header_args[@]}"
    printf '%-18s %-10s %10s req/s  p50 %7s ms  p95 %7s ms  p99 %7s ms  (%s requests, %s non-2xx, %s socket errors)\n' \
        "${title[$target]}" "${label[$w]}:" "$load_rps" "$load_p50_ms" "$load_p95_ms" "$load_p99_ms" \
        "$load_requests" "$load_non2xx" "$load_socket_errors"
    waf_running "$target" || die "${title[$target]} died during the $w run"
    # Every blocked request must be blocked and every other one pass: a run that is partly
    # errors measures something else.
    [[ $target != upstream && ${verdict[$w]} != 200 ]] && expected_non2xx=$load_requests
    ((load_non2xx == expected_non2xx)) \
        || die "${title[$target]}, ${label[$w]}: $load_non2xx of $load_requests answers were errors, expected $expected_non2xx"
    ((load_socket_errors == 0)) || die "${title[$target]}, ${label[$w]}: $load_socket_errors socket errors or timeouts"
    rps[$target/$w]=$load_rps
}

# --- verdicts ----------------------------------------------------------------------------
start_nginx upstream write_upstream_conf
check_verdicts upstream || die "the upstream does not answer 200 to every request"

verdicts_ok=0
for target in modsec rampart; do
    start_waf "$target"
    check_verdicts "$target" || verdicts_ok=1
    stop_waf "$target"
done

# nginx's start-up notice: "ModSecurity-nginx v1.0.3 (rules loaded inline/local/remote: 0/848/0)".
modsec_notice=$(grep -o 'ModSecurity-nginx v[^ ]* (rules loaded inline/local/remote: [0-9]*/[0-9]*/' "$work/modsec/error.log" | tail -n1 || true)
modsec_connector=$(cut -d' ' -f1-2 <<<"$modsec_notice")
modsec_rules=$(cut -d/ -f4 <<<"$modsec_notice")

echo "verdicts (each WAF alone, same request, same headers):"
printf '  %-42s %-9s %-18s %s\n' request expected "${title[modsec]}" "${title[rampart]}"
for w in "${WORKLOADS[@]}"; do
    request="${method[$w]} ${path[$w]}"
    [[ ${method[$w]} == POST ]] && request+=" (${#FORM_BODY}-byte form)"
    printf '  %-42s %-9s %-18s %s\n' "$request" "${verdict[$w]}" "${answer[modsec/$w]}" "${answer[rampart/$w]}"
done
echo
((verdicts_ok == 0)) || die "a WAF gave a verdict other than expected (000: no answer): the throughputs would not compare like for like"

# --- load --------------------------------------------------------------------------------
print_machine
echo "rules:    OWASP CRS ${crs_version:-of unknown version} from $crs_dir, crs-setup.conf.example as crs-setup.conf,"
echo "          paranoia level 1, blocking on the anomaly score"
echo "modsec:   $(nginx -v 2>&1 | cut -d' ' -f3-), ${modsec_connector:-ModSecurity-nginx}, libmodsecurity3 $(dpkg-query -W -f='${Version}' libmodsecurity3 2>/dev/null || echo '(version unknown)'),"
echo "          ${modsec_rules:-?} rules, $CPUS worker processes; $recommended"
echo "          with SecRuleEngine On and SecAuditEngine Off"
echo "rampart:  rampart edge, ${rampart_rules% loaded} (CRS and Rampart's own), response rules on, $CPUS tokio worker threads,"
echo "          rate limits off, log level warn"
echo "upstream: nginx without ModSecurity, $CPUS worker processes, 200 \"ok\" to everything; kept-alive connections from both WAFs"
print_load_settings
echo "          one WAF runs at a time; the upstream runs throughout"
echo "busy:     load average $(cut -d' ' -f1 /proc/loadavg) when the runs start (other work on the machine lowers every number)"
echo

# Workload by workload, the two WAFs back to back: on a machine where other work comes and
# goes, the two numbers of one ratio are then measured seconds apart, not minutes.
for w in "${WORKLOADS[@]}"; do
    for target in "${TARGETS[@]}"; do
        if [[ $target == upstream ]]; then
            measure "$target" "$w"
            continue
        fi
        start_waf "$target"
        # Check again what is about to be measured (a restart must not change it).
        check_verdicts "$target" || die "${title[$target]} changed its verdicts after a restart"
        measure "$target" "$w"
        stop_waf "$target"
    done
    echo
done

# What the WAF costs in the proxy: the benign GET again, through `rampart edge` with the
# WAF off (it must pass, like every request to the upstream).
start_waf rampart_off
[[ $(status rampart_off get) == 200 ]] || die "Rampart with the WAF off does not answer 200 to the benign GET"
measure rampart_off get
stop_waf rampart_off
echo

printf '%-12s %18s %20s %16s %24s\n' workload "${title[upstream]}" "${title[modsec]}" "${title[rampart]}" 'Rampart ÷ ModSecurity'
for w in "${WORKLOADS[@]}"; do
    awk -v name="${label[$w]}" -v upstream="${rps[upstream/$w]}" -v modsec="${rps[modsec/$w]}" -v rampart="${rps[rampart/$w]}" 'BEGIN {
        printf "%-12s %12.0f req/s %14.0f req/s %10.0f req/s %23.2f\n", name, upstream, modsec, rampart, rampart / modsec
    }'
done
awk -v on="${rps[rampart/get]}" -v off="${rps[rampart_off/get]}" 'BEGIN {
    printf "benign GET through rampart edge: WAF on %.0f req/s, WAF off %.0f req/s, WAF on ÷ WAF off = %.2f\n", on, off, on / off
}'
