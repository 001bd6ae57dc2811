#!/usr/bin/env bash
# Whole-process comparison of `prune` between cairn and rustic (and restic) on the same history:
# SNAPSHOTS backups of the benchmark corpus, each after replacing CHURN_MB of files, then
# `forget --keep-last KEEP` and a timed prune. The history is built once per tool; every run
# prunes a fresh copy of it, the tools taking turns. Prints medians, ratios and peak memory.
#
# Usage: benches/prune_compare.sh   (RUNS=3 SNAPSHOTS=50 CHURN_MB=20 KEEP=10 TOOLS="cairn rustic")
# Needs the corpus of benches/compare.sh (run that first, or set CORPUS to any directory).
# BUILD_ONLY=1 builds the histories (slow, untimed) and stops, so the timed part can run later.
#
# Two comparisons, each like with like:
# - `prune`: one default prune each. Both tools delete in two phases: cairn's prune condemns
#   unused packs and a later one deletes them (FORMAT.md §12); rustic's marks them and deletes
#   them in a prune at least 23 h later. Neither frees the space in this run.
# - `prune-now`: ending with the space freed. cairn runs both of its prunes back to back with no
#   grace (`--grace 0h`); rustic runs `prune --instant-delete`.
# Every run starts from a copy of the history and of the cache its last backup left, as a nightly
# prune after a backup does (a stale cache would time an index rebuild instead).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${CAIRN_BENCH_DIR:-/var/tmp/cairn-bench}
CORPUS=${CORPUS:-$WORK/corpus}
RUNS=${RUNS:-3}
SNAPSHOTS=${SNAPSHOTS:-50}
CHURN_MB=${CHURN_MB:-20}
KEEP=${KEEP:-10}
TOOLS=${TOOLS:-cairn rustic}
P=$WORK/prune

log() { printf '[prune-compare] %s\n' "$*" >&2; }

cmd() {
  local tool=$1 repo=$2
  case $tool in
    cairn) echo "$ROOT/target/release/cairn -q -r $repo --cache-dir $repo.cache" ;;
    rustic) echo "rustic --no-progress -r $repo --cache-dir $repo.cache" ;;
    restic) echo "restic -q -r $repo --cache-dir $repo.cache" ;;
  esac
}

# The source: the corpus as a base, plus a churn directory whose files change every snapshot.
churn() {
  local i=$1
  rm -rf "$P/src/churn/$((i % 5))"
  mkdir -p "$P/src/churn/$((i % 5))"
  head -c "$((CHURN_MB << 20))" /dev/urandom >"$P/src/churn/$((i % 5))/data.bin"
}

build_history() {
  local tool=$1 repo=$P/history-$1
  if [ -f "$repo.done" ]; then return; fi
  log "$tool: building $SNAPSHOTS snapshots"
  rm -rf "$repo" "$repo.cache" "$repo.cache.done" "$P/src/churn"
  mkdir -p "$P/src"
  $(cmd "$tool" "$repo") init >/dev/null
  for i in $(seq 1 "$SNAPSHOTS"); do
    churn "$i"
    $(cmd "$tool" "$repo") backup "$CORPUS" "$P/src/churn" >/dev/null
  done
  $(cmd "$tool" "$repo") forget --keep-last "$KEEP" >/dev/null
  touch "$repo.done"
}

# Brings the history's cache up to date with the history (histories built before the cache lived
# beside them), with a read-only command that loads the index.
warm_cache() {
  local tool=$1 repo=$P/history-$1
  if [ -f "$repo.cache.done" ]; then return; fi
  case $tool in
    cairn) $(cmd cairn "$repo") find no-such-name >/dev/null ;;
    rustic) $(cmd rustic "$repo") find --glob no-such-name >/dev/null 2>&1 || true ;;
    restic) $(cmd restic "$repo") find no-such-name >/dev/null ;;
  esac
  touch "$repo.cache.done"
}

prune_step() {
  local step=$1 tool=$2 repo=$3
  case $step-$tool in
    prune-cairn) echo "$(cmd cairn "$repo") prune" ;;
    prune-rustic) echo "$(cmd rustic "$repo") prune" ;;
    prune-now-cairn) echo "$(cmd cairn "$repo") prune --grace 0h && $(cmd cairn "$repo") prune --grace 0h" ;;
    prune-now-rustic) echo "$(cmd rustic "$repo") prune --instant-delete" ;;
    *-restic) echo "$(cmd restic "$repo") prune" ;;
  esac
}

main() {
  mkdir -p "$P"
  command -v rustic >/dev/null || cargo install rustic-rs --no-default-features --locked
  cargo build --release --quiet
  export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench RUSTIC_PASSWORD=bench
  for tool in $TOOLS; do
    build_history "$tool"
    warm_cache "$tool"
  done
  if [ -n "${BUILD_ONLY:-}" ]; then return; fi
  local results=$P/results-$(date +%Y%m%d-%H%M%S).tsv
  for run in $(seq 1 "$RUNS"); do
    for step in prune prune-now; do
      for tool in $TOOLS; do
        local repo=$P/run-$tool
        rm -rf "$repo" "$repo.cache"
        cp -a "$P/history-$tool" "$repo"
        cp -a "$P/history-$tool.cache" "$repo.cache"
        sync
        local before after
        before=$(du -sb "$repo" | cut -f1)
        log "run $run/$RUNS: $tool $step"
        /usr/bin/time -f '%e %M' -o "$P/time.out" bash -c "$(prune_step "$step" "$tool" "$repo")" >/dev/null
        after=$(du -sb "$repo" | cut -f1)
        read -r secs kib <"$P/time.out"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$step" "$tool" "$secs" "$kib" "$before" "$after" >>"$results"
      done
    done
  done
  python3 - "$results" <<'EOF'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    run, step, tool, secs, kib, before, after = line.split()
    rows[(step, tool)].append((float(secs), int(kib), int(before), int(after)))
print("| step | tool | median s | ratio to cairn | peak RSS | repository before -> after |")
print("| --- | --- | --- | --- | --- | --- |")
for (step, tool), rs in rows.items():
    base = rows.get((step, "cairn"))
    secs = statistics.median(r[0] for r in rs)
    kib = max(r[1] for r in rs)
    ratio = f"{secs / statistics.median(r[0] for r in base):.2f}x" if base else "-"
    print(f"| {step} | {tool} | {secs:.2f} | {ratio} | {kib / 1024:.0f} MiB | "
          f"{rs[0][2] / 2**30:.2f} GiB -> {rs[0][3] / 2**30:.2f} GiB |")
EOF
  log "raw results: $results"
}

main "$@"
