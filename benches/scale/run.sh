#!/usr/bin/env bash
# Scale harness: a repository of N chunks (examples/scale_gen.rs stores N tiny unique blobs
# through the real saver, one file per blob, 1,000 per directory), then each step a user runs
# on it, one process each, timed with GNU time: wall seconds, peak RSS, local cache size.
#
#   N=1000000 benches/scale/run.sh            # results in $WORK/results-$N.md
#   N=10000000 WORK=/var/tmp/cairn-scale benches/scale/run.sh
#   N=100000000 STEPS="cold warm backup rebackup check" benches/scale/run.sh   # some steps only
#
# Needs: a release build (made here), /usr/bin/time (Debian package `time`), disk for about
# 170 bytes per chunk in the repository and 60 in the cache, plus 1 GiB of new data.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-1000000}
WORK=${WORK:-/var/tmp/cairn-scale}
NEW_DATA_MB=${NEW_DATA_MB:-1024}
cargo build --release --quiet --bin cairn --example scale_gen
CAIRN=$PWD/target/release/cairn
GEN=$PWD/target/release/examples/scale_gen
REPO=$WORK/repo-$N
CACHE=$WORK/cache-$N
OUT=$WORK/results-$N.md
mkdir -p "$WORK"
export CAIRN_PASSWORD=scale-harness CAIRN_CACHE_DIR=$CACHE
rows=()
STEPS=${STEPS:-cold warm snapshots backup rebackup ls find check subset prune repair}

# want KEY: whether STEPS names this step.
want() { [[ " $STEPS " == *" $1 "* ]]; }

# step NAME COMMAND...: runs it once, records seconds, peak RSS and the cache's size after it.
step() {
  local name=$1; shift
  local t; t=$(mktemp)
  if ! /usr/bin/time -f '%e %M' -o "$t" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"; then
    echo "step $name failed: see $WORK/$name.err" >&2
    tail -5 "$WORK/$name.err" >&2
    exit 1
  fi
  read -r secs kb < <(tail -1 "$t")
  rm -f "$t"
  local cache_mb; cache_mb=$(du -sm "$CACHE" 2>/dev/null | cut -f1 || true)
  rows+=("| $name | $secs | $((kb / 1024)) | ${cache_mb:-0} |")
  printf '%-28s %8s s %6s MiB  cache %s MiB\n' "$name" "$secs" "$((kb / 1024))" "${cache_mb:-0}"
}

if [ ! -e "$REPO/config" ]; then
  rm -rf "$REPO" "$CACHE"
  "$CAIRN" -q init -r "$REPO"
  step "generate $N chunks" "$GEN" "$REPO" "$N" 1
  step "generate $((N / 10)) more (2nd snapshot)" "$GEN" "$REPO" "$((N / 10))" 2
fi
NEW=$WORK/new-data-$NEW_DATA_MB.bin
[ -e "$NEW" ] || head -c "$((NEW_DATA_MB << 20))" /dev/urandom > "$NEW"

# Opening with the index: listing one directory reads its tree blobs through the index.
if want cold; then
  rm -rf "$CACHE"
  step "cold open (ls one dir)" "$CAIRN" -r "$REPO" ls --host scale-1 latest:/scale/a000/b000
fi
want warm && step "warm open (ls one dir)" "$CAIRN" -r "$REPO" ls --host scale-1 latest:/scale/a000/b000
want snapshots && step "snapshots" "$CAIRN" -r "$REPO" snapshots
# The same 1 GiB into an empty repository: the speed a backup of new data should keep.
if want backup; then
  rm -rf "$WORK/empty-repo" "$WORK/empty-cache"
  "$CAIRN" -q init -r "$WORK/empty-repo"
  CAIRN_CACHE_DIR=$WORK/empty-cache step "backup ${NEW_DATA_MB} MiB into an empty repository" "$CAIRN" -r "$WORK/empty-repo" --json backup "$NEW"
  rm -rf "$WORK/empty-repo" "$WORK/empty-cache"
  step "backup ${NEW_DATA_MB} MiB new data" "$CAIRN" -r "$REPO" --json backup "$NEW"
fi
want rebackup && step "unchanged re-backup" "$CAIRN" -r "$REPO" --json backup "$NEW"
want ls && step "ls -R of the large snapshot" "$CAIRN" -r "$REPO" ls -R --host scale-1 latest:/scale
want find && step "find f999" "$CAIRN" -r "$REPO" find --host scale-1 f999
want check && step "check" "$CAIRN" -r "$REPO" check
want subset && step "check --read-data-subset 1%" "$CAIRN" -r "$REPO" check --read-data-subset 1%
if want prune; then
  second=$("$CAIRN" -r "$REPO" --json snapshots --host scale-2 | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
  step "forget 2nd snapshot + prune" "$CAIRN" -r "$REPO" forget "$second" --prune --grace 0s
fi
want repair && step "repair index" "$CAIRN" -r "$REPO" repair index

{
  echo "N = $N chunks ($(du -sm "$REPO" | cut -f1) MiB repository), $(date -u +%F), $(nproc) cores"
  echo
  echo "| step | seconds | peak RSS MiB | cache MiB |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > "$OUT"
cat "$OUT"
