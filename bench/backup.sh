#!/usr/bin/env bash
# Backup and restore drill of a large SQLite database, against the seeds' own recipe
# ("dump → compress → copy") done with stock tools on the same file in the same run.
#
# Fills a fresh data dir to about BENCH_BACKUP_GB gigabytes (sessions of one admin, with
# random user agents so the file does not compress to nothing), then times:
#   baseline   sqlite3 .backup (online copy) | zstd -3 > file, then sha256sum of the file
#   rampart    rampart backup create: VACUUM INTO, manifest with row counts and audit heads,
#              zstd -3, AES-256-GCM STREAM, written, read back, hashed, recorded
#   drill      rampart backup drill: hash check, decrypt, decompress, open, verify every
#              audit chain, compare row counts (the RTO)
# and, with BENCH_S3_ENDPOINT (an S3-compatible server and bucket BENCH_S3_BUCKET), the same
# backup uploaded to the bucket and read back, and a drill that downloads it.
# Prints wall time, CPU and peak memory of each, and rampart ÷ baseline.
#
# Usage: bench/backup.sh
# Environment:
#   RAMPART_BIN          binary to run (default: build and use target/release/rampart)
#   BENCH_BACKUP_GB      size to fill to, 0.2..20 (default 1.0)
#   BENCH_S3_ENDPOINT    e.g. http://127.0.0.1:9000 (moto: python3 -m moto.server -p 9000)
#   BENCH_S3_BUCKET      default rampart-bench (must exist); credentials test/test unless
#                        AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are set
#
# A benchmark, not a test: it fails only when a command fails.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GB=${BENCH_BACKUP_GB:-1.0}
[[ $GB =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "BENCH_BACKUP_GB must be a number, got '$GB'"
awk -v g="$GB" 'BEGIN { exit !(g >= 0.2 && g <= 20) }' || die "BENCH_BACKUP_GB must be 0.2..20"
S3_ENDPOINT=${BENCH_S3_ENDPOINT:-}
S3_BUCKET=${BENCH_S3_BUCKET:-rampart-bench}
S3_KEY=${AWS_ACCESS_KEY_ID:-test}
S3_SECRET=${AWS_SECRET_ACCESS_KEY:-test}

need_tool sqlite3 sqlite3
need_tool zstd zstd
[[ -x /usr/bin/time ]] || install_package time "/usr/bin/time (GNU time)"
resolve_bin
clear_rampart_env
prepare_workdir
export RAMPART_DATA_DIR=$work/data RAMPART_LOG_LEVEL=warn

# --- fill --------------------------------------------------------------------------------
"$bin" migrate >/dev/null 2>&1
echo -n 'maple orbit canvas thunder' | "$bin" admin create --email bench@example.id >/dev/null 2>&1
db=$RAMPART_DATA_DIR/rampart.db
rows=$(awk -v g="$GB" 'BEGIN { printf "%d", g * 1e9 / 480 }')
echo "filling $db with $rows session rows (~$GB GB)..." >&2
sqlite3 "$db" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
INSERT INTO sessions (id, tenant_id, user_id, created_at, expires_at, source_ip, user_agent)
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
SELECT lower(hex(randomblob(16))), u.tenant_id, u.id, 1700000000000 + i, 1800000000000 + i,
       '10.' || (i % 256) || '.' || (i / 256 % 256) || '.' || (i / 65536 % 256),
       'Mozilla/5.0 bench ' || hex(randomblob(150))
FROM n, (SELECT id, tenant_id FROM users LIMIT 1) u;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
"$bin" audit checkpoint >/dev/null
size=$(stat -c %s "$db")

# --- measure -----------------------------------------------------------------------------
declare -A wall cpu rss
# timed NAME COMMAND...: runs it under GNU time; records wall s, user+sys s, peak MB.
timed() {
    local name=$1
    shift
    /usr/bin/time -f '%e %U %S %M' -o "$work/time.$name" "$@" >"$work/out.$name" 2>"$work/err.$name" \
        || { cat "$work/err.$name" >&2; die "$name failed"; }
    read -r w u s m <"$work/time.$name"
    wall[$name]=$w
    cpu[$name]=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.1f", u + s }')
    rss[$name]=$((m / 1024))
}

mkdir -p "$work/baseline"
timed baseline sh -c "sqlite3 '$db' '.backup $work/baseline/copy.db' \
    && zstd -q -3 --rm '$work/baseline/copy.db' -o '$work/baseline/copy.db.zst' \
    && sha256sum '$work/baseline/copy.db.zst' >/dev/null"
baseline_bytes=$(stat -c %s "$work/baseline/copy.db.zst")
rm -rf "$work/baseline"

timed rampart "$bin" backup create --json
backup_bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["size_bytes"])' "$work/out.rampart")
timed drill "$bin" backup drill --json
rto_ms=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rto_ms"])' "$work/out.drill")

if [[ -n $S3_ENDPOINT ]]; then
    export RAMPART_BACKUP_S3_ENDPOINT=$S3_ENDPOINT RAMPART_BACKUP_S3_BUCKET=$S3_BUCKET \
        RAMPART_BACKUP_S3_ACCESS_KEY_ID=$S3_KEY RAMPART_BACKUP_S3_SECRET_ACCESS_KEY=$S3_SECRET
    timed rampart_s3 "$bin" backup create --json
    timed drill_s3 "$bin" backup drill --json
fi

# --- report ------------------------------------------------------------------------------
print_machine
echo "database: SQLite, $((size / 1000000)) MB ($rows session rows)"
printf '%-28s %9s %12s %9s %10s\n' step "wall s" "CPU s" "peak MB" "file MB"
printf '%-28s %9s %12s %9s %10s\n' "baseline (.backup|zstd|sha)" "${wall[baseline]}" "${cpu[baseline]}" "${rss[baseline]}" $((baseline_bytes / 1000000))
printf '%-28s %9s %12s %9s %10s\n' "rampart backup create" "${wall[rampart]}" "${cpu[rampart]}" "${rss[rampart]}" $((backup_bytes / 1000000))
printf '%-28s %9s %12s %9s %10s\n' "rampart backup drill" "${wall[drill]}" "${cpu[drill]}" "${rss[drill]}" "-"
if [[ -n $S3_ENDPOINT ]]; then
    printf '%-28s %9s %12s %9s %10s\n' "backup create (S3)" "${wall[rampart_s3]}" "${cpu[rampart_s3]}" "${rss[rampart_s3]}" "-"
    printf '%-28s %9s %12s %9s %10s\n' "backup drill (S3)" "${wall[drill_s3]}" "${cpu[drill_s3]}" "${rss[drill_s3]}" "-"
fi
echo "drill RTO (reported by the drill): $(awk -v m="$rto_ms" 'BEGIN { printf "%.1f", m / 1000 }') s"
awk -v r="${wall[rampart]}" -v b="${wall[baseline]}" \
    'BEGIN { printf "ratio: rampart backup create / baseline wall time = %.2f\n", r / b }'
