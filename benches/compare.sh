#!/usr/bin/env bash
# Whole-process comparison of cairn with restic and rustic on the same corpus, on this machine,
# in one run: the tools take turns (run 1: cairn, restic, rustic; run 2: ...), warm page cache,
# each run in a fresh repository. Prints medians, ratios to cairn, peak memory and sizes.
#
# Usage: benches/compare.sh            (RUNS=3 DUMP_MB=512 TOOLS="cairn restic rustic" STEPS="tree dumps")
# STEPS=tree times backup, re-backup, restore, check and `cp -a`; STEPS=dumps only the dumps.
# Work directory: $CAIRN_BENCH_DIR (default /var/tmp/cairn-bench); the corpus is built once.
# Restores and `cp -a` write under $RESTORE_DIR (default the work directory); RESTORE_DIR=/dev/shm
# times them without the disk's writeback, which otherwise decides most of their time.
# Steps timed per tool: initial backup of the tree, unchanged re-backup, restore of the tree,
# check --read-data, backup of day-1 and day-2 database dumps from stdin (and the bytes the
# day-2 dump adds to the repository). `cp -a` of the tree is timed as the restore yardstick.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${CAIRN_BENCH_DIR:-/var/tmp/cairn-bench}
RESTORE_DIR=${RESTORE_DIR:-$WORK}
RUNS=${RUNS:-3}
DUMP_MB=${DUMP_MB:-512}
TOOLS=${TOOLS:-cairn restic rustic}
STEPS=${STEPS:-tree dumps}
# A few system directories, about 2 GB and 60k entries on Debian 12; missing ones are skipped.
CORPUS_DIRS=${CORPUS_DIRS:-/usr/share /usr/include /usr/lib/x86_64-linux-gnu /usr/lib/jvm /usr/lib/python3 /usr/lib/python3.11 /usr/lib/gcc}

log() { printf '[compare] %s\n' "$*" >&2; }

install_tools() {
  if ! [ -x /usr/bin/time ]; then apt-get install -y -q time >/dev/null; fi
  if [[ " $TOOLS " == *" restic "* ]] && ! command -v restic >/dev/null; then
    log "installing restic (Debian package)"
    apt-get install -y -q restic >/dev/null
  fi
  if [[ " $TOOLS " == *" rustic "* ]] && ! command -v rustic >/dev/null; then
    log "installing rustic (cargo install rustic-rs; takes a while)"
    cargo install rustic-rs --no-default-features --locked >/dev/null
  fi
  log "building cairn (release)"
  cargo build --release --quiet
  CAIRN=$ROOT/target/release/cairn
}

build_corpus() {
  if [ -f "$WORK/corpus.done" ]; then return; fi
  log "building the corpus in $WORK/corpus"
  rm -rf "$WORK/corpus" "$WORK/dumps"
  mkdir -p "$WORK/corpus" "$WORK/dumps"
  for dir in $CORPUS_DIRS; do
    # tar, not `cp -a --parents`: coreutils 9.1 fails on that combination.
    if [ -d "$dir" ]; then tar -C / -cf - "${dir#/}" | tar -C "$WORK/corpus" -xf -; fi
  done
  python3 "$ROOT/benches/gen_dump.py" 1 "$WORK/dumps/day1.sql" --size-mb "$DUMP_MB"
  python3 "$ROOT/benches/gen_dump.py" 2 "$WORK/dumps/day2.sql" --size-mb "$DUMP_MB"
  touch "$WORK/corpus.done"
}

# tool_cmd TOOL STEP: the command line of one step, reading $REPO, $CACHE, $OUT.
tool_cmd() {
  local tool=$1 step=$2
  case $tool in
    cairn)
      local c="$CAIRN -q -r $REPO --cache-dir $CACHE"
      case $step in
        init) echo "$c init" ;;
        backup | rebackup) echo "$c backup $WORK/corpus" ;;
        restore) echo "$c restore latest --target $OUT" ;;
        check) echo "$c check --read-data" ;;
        dump1) echo "$c backup --stdin --stdin-name db.sql" ;;
        dump2) echo "$c backup --stdin --stdin-name db.sql" ;;
      esac ;;
    restic)
      local c="restic -q -r $REPO --cache-dir $CACHE"
      case $step in
        init) echo "$c init" ;;
        backup | rebackup) echo "$c backup $WORK/corpus" ;;
        restore) echo "$c restore latest --target $OUT" ;;
        check) echo "$c check --read-data" ;;
        dump1 | dump2) echo "$c backup --stdin --stdin-filename db.sql" ;;
      esac ;;
    rustic)
      local c="rustic --no-progress -r $REPO --cache-dir $CACHE"
      case $step in
        init) echo "$c init" ;;
        backup | rebackup) echo "$c backup $WORK/corpus" ;;
        restore) echo "$c restore latest $OUT" ;;
        check) echo "$c check --read-data" ;;
        # --force: rustic 0.11.4 otherwise takes a stdin file with a parent as unchanged and
        # stores the previous day's dump (rustic-rs/rustic#1793, fixed in rustic_core#536).
        dump1 | dump2) echo "$c backup --force - --stdin-filename db.sql" ;;
      esac ;;
  esac
}

# measure RUN TOOL STEP [STDIN]: runs one step under /usr/bin/time, appends a result row.
measure() {
  local run=$1 tool=$2 step=$3 input=${4:-/dev/null} cmd
  cmd=$(tool_cmd "$tool" "$step")
  # Start from no dirty pages: otherwise the writeback of the previous step's output (a restore,
  # `cp -a`) throttles this one, and restore times swing 4 s to 22 s with the order of the steps.
  sync
  if ! /usr/bin/time -f '%e %M' -o "$WORK/time.out" $cmd <"$input" >>"$WORK/log/$tool.log" 2>&1; then
    log "$tool $step failed; see $WORK/log/$tool.log"
    tail -5 "$WORK/log/$tool.log" >&2
    return 1
  fi
  read -r secs kib <"$WORK/time.out"
  printf '%s\t%s\t%s\t%s\t%s\n' "$run" "$tool" "$step" "$secs" "$kib" >>"$RESULTS"
}

repo_bytes() { du -sb "$REPO" | cut -f1; }

run_tool() {
  local run=$1 tool=$2
  REPO=$WORK/repo-$tool CACHE=$WORK/cache-$tool OUT=$RESTORE_DIR/restore-$tool
  rm -rf "$REPO" "$CACHE" "$OUT"
  export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench RUSTIC_PASSWORD=bench
  $(tool_cmd "$tool" init) >>"$WORK/log/$tool.log" 2>&1
  if [[ " $STEPS " == *" tree "* ]]; then
    measure "$run" "$tool" backup
    printf '%s\t%s\trepo_tree\t%s\t0\n' "$run" "$tool" "$(repo_bytes)" >>"$RESULTS"
    measure "$run" "$tool" rebackup
    measure "$run" "$tool" restore
    rm -rf "$OUT"
    measure "$run" "$tool" check
  fi
  if [[ " $STEPS " == *" dumps "* ]]; then
    measure "$run" "$tool" dump1 "$WORK/dumps/day1.sql"
    local before
    before=$(repo_bytes)
    measure "$run" "$tool" dump2 "$WORK/dumps/day2.sql"
    printf '%s\t%s\tdump2_added\t%s\t0\n' "$run" "$tool" "$(($(repo_bytes) - before))" >>"$RESULTS"
  fi
  rm -rf "$REPO" "$CACHE"
}

run_cp() {
  local run=$1
  rm -rf "$RESTORE_DIR/cp-out"
  sync
  /usr/bin/time -f '%e %M' -o "$WORK/time.out" cp -a "$WORK/corpus" "$RESTORE_DIR/cp-out"
  read -r secs kib <"$WORK/time.out"
  printf '%s\tcp\trestore\t%s\t%s\n' "$run" "$secs" "$kib" >>"$RESULTS"
  rm -rf "$RESTORE_DIR/cp-out"
}

main() {
  mkdir -p "$WORK/log"
  install_tools
  build_corpus
  RESULTS=$WORK/results-$(date +%Y%m%d-%H%M%S).tsv
  log "corpus: $(du -sh "$WORK/corpus" | cut -f1), $(find "$WORK/corpus" | wc -l) entries; dumps: $(du -sh "$WORK/dumps" | cut -f1)"
  tar -cf - "$WORK/corpus" 2>/dev/null | cat >/dev/null # warm the page cache
  for run in $(seq 1 "$RUNS"); do
    for tool in $TOOLS; do
      log "run $run/$RUNS: $tool"
      run_tool "$run" "$tool"
    done
    if [[ " $STEPS " == *" tree "* ]]; then run_cp "$run"; fi
  done
  python3 "$ROOT/benches/summarize.py" "$RESULTS"
  log "raw results: $RESULTS"
}

main "$@"
