#!/usr/bin/env bash
# A fragmented index: N `wal push --ahead 0` calls of 1 MiB WAL-like files leave N index files
# (one per push). Times a check with a new cache directory (every index file and WAL record read
# from storage) three times, prunes (which consolidates the index), and times it three times more.
# With S3=s3://BUCKET/PREFIX (and the AWS_* variables of that storage) the repository is first
# synced there and the checks and the prune run against it.
#
# Usage: benches/index_consolidation.sh [CAIRN_BINARY]   (default: a release build of this checkout)
#   N=1000 (pushes)   S3= (optional target, e.g. s3://cairn/consolidation on a local moto)
# Work directory: $CAIRN_BENCH_DIR (default /var/tmp/cairn-consolidation-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${CAIRN_BENCH_DIR:-/var/tmp/cairn-consolidation-bench}
N=${N:-1000}
if [ $# -gt 0 ]; then CAIRN=$1; else cargo build --release --quiet; CAIRN=$PWD/target/release/cairn; fi
export CAIRN_PASSWORD=bench
rm -rf "$WORK"
mkdir -p "$WORK/pg_wal"
local_repo=("$CAIRN" -r "$WORK/repo" --cache-dir "$WORK/cache" -q)
"${local_repo[@]}" init
python3 - "$WORK/pg_wal" "$N" <<'PY'
import os, random, sys
d, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(1)
for i in range(1, n + 1):
    name = "00000001%08X%08X" % (i // 4096, i % 4096)
    with open(os.path.join(d, name), "wb") as f:
        f.write(rnd.randbytes(64 * 1024) * 16)   # 1 MiB that compresses, as WAL does
PY
start=$(date +%s.%N)
for f in "$WORK"/pg_wal/0*; do "${local_repo[@]}" wal push --ahead 0 "$f"; done
echo "$N pushes: $(echo "$(date +%s.%N) - $start" | bc) s; index files: $(ls "$WORK/repo/index" | wc -l)"
repo=("$CAIRN" -r "$WORK/repo" -q)
if [ -n "${S3:-}" ]; then
  "${local_repo[@]}" sync --to "$S3"
  repo=("$CAIRN" -r "$S3" -q)
fi
cold_checks() {
  for _ in 1 2 3; do
    rm -rf "$WORK/cold"
    /usr/bin/time -f "check, new cache, $1: %e s, peak %M KiB" "${repo[@]}" --cache-dir "$WORK/cold" check
  done
}
cold_checks "before prune"
"${repo[@]}" --cache-dir "$WORK/cache2" --json prune |
  python3 -c 'import json, sys; d = json.load(sys.stdin); print("prune: %d index files -> %d" % (d["index_files"], d["outcome"]["index_files_written"]))'
cold_checks "after prune"
