#!/usr/bin/env bash
# Where an engine spends its instructions, counted by callgrind: repeatable to a fraction of
# a percent even while other work shares the CPUs, unlike a wall-clock run.
#
# Usage: bench/profile.sh waf
#   Builds the WAF crate's `profile` example (release), then for each workload (the benign
#   GET and the 1 KB form POST of bench/waf.sh, and the JSON body of bench/payments.sh) runs
#   it under `valgrind --tool=callgrind`, counting only the measured requests (not loading
#   CRS), and prints instructions per request and the functions with the most instructions
#   of their own.
# Environment:
#   BENCH_CRS_DIR     the CRS release (default ../shared/crs/v4.28.0 beside the workspace)
#   PROFILE_REQUESTS  requests per workload (default 200)
#   PROFILE_TOP       rows per table (default 15)
#   PROFILE_WORKLOADS workloads to run (default "get post json")
#   PROFILE_MALLOC    glibc (default: what the example links) or jemalloc (Debian's
#                     libjemalloc2 preloaded, the allocator the rampart binary links)
# Needs valgrind (callgrind_annotate comes with it); as root on Debian/Ubuntu it installs it.
# A benchmark, not a test: it fails only when something cannot run.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ ${1:-} == waf ]] || die "usage: bench/profile.sh waf (the only engine it profiles so far)"

readonly CRS_DIR=${BENCH_CRS_DIR:-$repo_root/../shared/crs/v4.28.0}
readonly REQUESTS=${PROFILE_REQUESTS:-200}
readonly TOP=${PROFILE_TOP:-15}
read -r -a workloads <<<"${PROFILE_WORKLOADS:-get post json}"
[[ $REQUESTS =~ ^[0-9]+$ ]] && ((REQUESTS >= 1 && REQUESTS <= 100000)) || die "PROFILE_REQUESTS must be 1..100000"
[[ $TOP =~ ^[0-9]+$ ]] || die "PROFILE_TOP must be a whole number"
[[ -d $CRS_DIR/rules ]] || die "no CRS at $CRS_DIR (rules/); set BENCH_CRS_DIR"
readonly MALLOC=${PROFILE_MALLOC:-glibc}
preload=()
case $MALLOC in
    glibc) ;;
    jemalloc)
        jemalloc=$(ldconfig -p 2>/dev/null | awk '/libjemalloc\.so\.2 /{print $NF; exit}')
        if [[ -z $jemalloc ]]; then
            install_package libjemalloc2 "jemalloc (for PROFILE_MALLOC=jemalloc)"
            jemalloc=$(ldconfig -p | awk '/libjemalloc\.so\.2 /{print $NF; exit}')
        fi
        [[ -n $jemalloc ]] || die "no libjemalloc.so.2 found"
        preload=(env "LD_PRELOAD=$jemalloc")
        ;;
    *) die "PROFILE_MALLOC must be glibc or jemalloc" ;;
esac

need_tool valgrind valgrind
command -v callgrind_annotate >/dev/null || die "callgrind_annotate is missing (it comes with valgrind)"

(cd "$repo_root" && cargo build --release -q -p rampart-waf --example profile) \
    || die "building the profile example failed"
example=$repo_root/target/release/examples/profile

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "profile: CRS $(grep -o -m1 'OWASP_CRS/[0-9.]*' "$CRS_DIR/crs-setup.conf.example" | cut -d/ -f2 || echo '?') at paranoia level 1, engine On, responses inspected;"
echo "         allocator $MALLOC; $REQUESTS requests per workload after one unmeasured; commit $(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo '?')"
for w in "${workloads[@]}"; do
    out=$work/callgrind.$w
    # --trace-children follows `env` into the example when an allocator is preloaded.
    valgrind --tool=callgrind --trace-children=yes --toggle-collect='*run_requests*' \
        --callgrind-out-file="$out" "${preload[@]}" \
        "$example" "$CRS_DIR" "$w" "$REQUESTS" >"$work/$w.log" 2>&1 \
        || { cat "$work/$w.log" >&2; die "$w: the profile run failed"; }
    total=$(grep -m1 '^summary:' "$out" | awk '{print $2}')
    [[ -n $total ]] || die "$w: callgrind wrote no summary"
    echo
    awk -v w="$w" -v t="$total" -v n="$REQUESTS" \
        'BEGIN { printf "--- %s: %.0f instructions per request (%s in %d requests)\n", w, t / n, t, n }'
    # The example's own line: requests run and the transformation cache's hit rate.
    grep -h ' requests, ' "$work/$w.log" | sed 's/^/    /' || true
    printf '%8s %6s  %s\n' 'Ir/req' 'self%' 'function'
    # callgrind_annotate's per-function lines: "1,234,567 ( 1.23%)  file:function [binary]".
    # awk reads to the end (no early exit), so callgrind_annotate never sees a broken pipe.
    callgrind_annotate --inclusive=no --threshold=100 "$out" \
        | awk -v n="$REQUESTS" -v top="$TOP" '
            /PROGRAM TOTALS/ { next }
            match($0, /^ *[0-9,]+ \( *[0-9.]+%\)  /) && rows < top {
                head = substr($0, 1, RLENGTH); name = substr($0, RLENGTH + 1)
                ir = head; sub(/\(.*/, "", ir); gsub(/[ ,]/, "", ir)
                pct = head; sub(/^[^(]*\( */, "", pct); sub(/\).*/, "", pct)
                sub(/ \[[^]]*\]$/, "", name)       # the binary
                sub(/^[^:]*:/, "", name)            # the source file
                gsub(/::h[0-9a-f]{16}/, "", name)   # symbol hashes
                if (length(name) > 90) name = substr(name, 1, 87) "..."
                printf "%8.0f %6s  %s\n", ir / n, pct, name
                rows++
            }'
done
