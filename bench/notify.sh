#!/usr/bin/env bash
# Notifications enqueued and delivered per second, to a local SMTP server (aiosmtpd) and
# to a webhook receiver, beside the job queue's empty-job rate in the same run (the same
# store, the same worker code, the same concurrency). See bench/README.md.
#
# It runs the ignored test `notify::bench_notify_throughput` of the API suite, which
# builds the app with `app::build` as `rampart serve` does. BENCH_N (default 500)
# notifications per measure; BENCH_PROFILE=dev uses the debug build (quicker to build,
# slower to run: say so when quoting its numbers); the default is --release.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

n=${BENCH_N:-500}
[[ $n =~ ^[0-9]+$ ]] && ((n >= 10 && n <= 100000)) || die "BENCH_N must be 10 to 100000"
profile=${BENCH_PROFILE:-release}
case $profile in
    release) profile_flag=(--release) ;;
    dev) profile_flag=() ;;
    *) die "BENCH_PROFILE must be release or dev" ;;
esac
need_tool python3 python3
python3 -c 'import aiosmtpd' 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check 'aiosmtpd==1.4.6' \
    || die "needs PyPI aiosmtpd (pip install aiosmtpd==1.4.6)"

print_machine_short() {
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "profile: $profile; n = $n per measure; SQLite in a temp dir; notify queue concurrency 8"
}
print_machine_short
clear_rampart_env
cd "$repo_root"
RAMPART_BENCH_N=$n cargo test -q "${profile_flag[@]}" -p rampart --test api \
    notify::bench_notify_throughput -- --ignored --nocapture --test-threads=1 2>/dev/null \
    | grep '^bench:' | sed 's/^bench: //'
