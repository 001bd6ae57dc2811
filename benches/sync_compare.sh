#!/usr/bin/env bash
# Offsite speed on this machine, against S3 servers on loopback, in one run:
#   sync:   `cairn sync --to s3://…` of a ~1 GB repository against `rclone copy` of the same repository
#           directory to the same server, each into a fresh bucket of a freshly started server;
#   remote: backup of a ~1 GB subset of the corpus straight to S3 and restore straight from it, against
#           the same backup and restore with a local repository.
# The contenders take turns within each run (run 1: cairn, rclone; run 2: ...), warm page cache, `sync`
# before every timed step; prints medians of RUNS runs, ratios and peak RSS (/usr/bin/time -f '%e %M').
#
# Usage: benches/sync_compare.sh      (RUNS=3 SERVERS="s3s moto" STEPS="sync remote")
# Servers: s3s = the S3 server the tests run in-process (s3s-fs), as `examples/s3_server.rs`;
#          moto = moto_server (a Python venv, made like tests/servers/start.sh does, or $MOTO_SERVER).
# Work directory: $CAIRN_BENCH_DIR/sync (default /var/tmp/cairn-bench/sync). The corpus is
# $CAIRN_BENCH_DIR/corpus (benches/compare.sh builds it); without it, $CORPUS (any ~1-2 GB tree).
# The sync repository holds a backup of the whole corpus plus $CAIRN_BENCH_DIR/dumps/day1.sql when it
# exists (about 1 GB); the remote steps back up $SUBSET (directories of the corpus, about 1.1 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=${CAIRN_BENCH_DIR:-/var/tmp/cairn-bench}
WORK=$BENCH/sync
RUNS=${RUNS:-3}
SERVERS=${SERVERS:-s3s moto}
STEPS=${STEPS:-sync remote}
CORPUS=${CORPUS:-$BENCH/corpus}
SUBSET=${SUBSET:-usr/share usr/lib/jvm}
CONNECTIONS=${CONNECTIONS:-}
export CAIRN_PASSWORD=bench

log() { printf '[sync_compare] %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_tcp() { for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; log "port $1 never opened"; return 1; }

build() {
  [ -x /usr/bin/time ] || apt-get install -y -q time >/dev/null
  command -v rclone >/dev/null || { log "rclone is not installed"; exit 1; }
  log "building cairn and examples/s3_server (release)"
  cargo build --release --quiet --bin cairn --example s3_server
  CAIRN=$ROOT/target/release/cairn
  S3S=$ROOT/target/release/examples/s3_server
  if [[ " $SERVERS " == *" moto "* ]]; then
    MOTO=${MOTO_SERVER:-$WORK/moto-venv/bin/moto_server}
    if ! [ -x "$MOTO" ]; then
      log "installing moto[server] into $WORK/moto-venv"
      python3 -m venv "$WORK/moto-venv" && "$WORK/moto-venv/bin/pip" install -q 'moto[server]'
    fi
  fi
}

# The repository sync copies, built once: a backup of the corpus, plus the day-1 dump when present.
source_repo() {
  SRC=$WORK/source-repo
  if [ -f "$WORK/source-repo.done" ]; then return; fi
  [ -d "$CORPUS" ] || { log "no corpus at $CORPUS: run benches/compare.sh once or set CORPUS"; exit 1; }
  log "building the source repository from $CORPUS"
  rm -rf "$SRC" "$WORK/source-cache"
  $CAIRN -q -r "$SRC" --cache-dir "$WORK/source-cache" init
  $CAIRN -q -r "$SRC" --cache-dir "$WORK/source-cache" backup "$CORPUS"
  if [ -f "$BENCH/dumps/day1.sql" ]; then
    $CAIRN -q -r "$SRC" --cache-dir "$WORK/source-cache" backup --stdin --stdin-name db.sql <"$BENCH/dumps/day1.sql"
  fi
  touch "$WORK/source-repo.done"
}

# start_server KIND: a fresh server with one empty bucket `bench`; sets ENDPOINT, SERVER_PID, the AWS_*
# variables cairn reads and the RCLONE_CONFIG_BENCH_* variables that define the rclone remote `BENCH:`.
start_server() {
  local kind=$1 port
  port=$(free_port)
  rm -rf "$WORK/server"
  mkdir -p "$WORK/server"
  case $kind in
    s3s)
      mkdir -p "$WORK/server/bench"
      setsid "$S3S" "$WORK/server" "127.0.0.1:$port" >"$WORK/server.log" 2>&1 </dev/null &
      SERVER_PID=$!
      export AWS_ACCESS_KEY_ID=cairn-bench AWS_SECRET_ACCESS_KEY=cairn-bench-secret ;;
    moto)
      # moto keeps objects in its own process: a fresh server per step is also a fresh memory.
      setsid "$MOTO" -H 127.0.0.1 -p "$port" >"$WORK/server.log" 2>&1 </dev/null &
      SERVER_PID=$!
      export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench ;;
  esac
  wait_tcp "$port"
  ENDPOINT=http://127.0.0.1:$port
  if [ "$kind" = moto ]; then curl -sf -X PUT "$ENDPOINT/bench" >/dev/null; fi
  export AWS_ENDPOINT_URL=$ENDPOINT AWS_REGION=us-east-1
  export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
    RCLONE_CONFIG_BENCH_ENDPOINT=$ENDPOINT RCLONE_CONFIG_BENCH_REGION=us-east-1 \
    RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true \
    RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID \
    RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
}

stop_server() {
  if [ -n "${SERVER_PID:-}" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
  rm -rf "$WORK/server"
}
trap stop_server EXIT

# measure RUN SERVER WHAT CMD...: times one command, appends `run server what seconds kib` to $RESULTS.
measure() {
  local run=$1 server=$2 what=$3
  shift 3
  sync
  if ! /usr/bin/time -f '%e %M' -o "$WORK/time.out" "$@" >>"$WORK/log" 2>&1; then
    log "$what on $server failed: $*; see $WORK/log"
    tail -5 "$WORK/log" >&2
    return 1
  fi
  read -r secs kib <"$WORK/time.out"
  printf '%s\t%s\t%s\t%s\t%s\n' "$run" "$server" "$what" "$secs" "$kib" >>"$RESULTS"
}

conn_flag() { if [ -n "$CONNECTIONS" ]; then echo "--connections $CONNECTIONS"; fi; }

run_sync() {
  local run=$1 server=$2
  start_server "$server"
  # shellcheck disable=SC2046
  measure "$run" "$server" "cairn sync" $CAIRN -q -r "$SRC" sync --to s3://bench/repo $(conn_flag)
  stop_server
  start_server "$server"
  # Without AWS_CA_BUNDLE: rclone 1.60 refuses to start when it is set (LoadCustomCABundleError).
  measure "$run" "$server" "rclone copy" env -u AWS_CA_BUNDLE rclone copy "$SRC" BENCH:bench/repo
  stop_server
}

run_remote() {
  local run=$1 server=$2 sources=() d
  for d in $SUBSET; do sources+=("$CORPUS/$d"); done
  local cache=$WORK/cache out=$WORK/restore
  # Local repository.
  rm -rf "$WORK/local-repo" "$cache" "$out"
  $CAIRN -q -r "$WORK/local-repo" --cache-dir "$cache" init
  measure "$run" "$server" "backup local" $CAIRN -q -r "$WORK/local-repo" --cache-dir "$cache" backup "${sources[@]}"
  measure "$run" "$server" "restore local" $CAIRN -q -r "$WORK/local-repo" --cache-dir "$cache" restore latest --target "$out"
  rm -rf "$WORK/local-repo" "$cache" "$out"
  # The same on S3.
  start_server "$server"
  $CAIRN -q -r s3://bench/repo --cache-dir "$cache" init
  measure "$run" "$server" "backup s3" $CAIRN -q -r s3://bench/repo --cache-dir "$cache" backup "${sources[@]}"
  measure "$run" "$server" "restore s3" $CAIRN -q -r s3://bench/repo --cache-dir "$cache" restore latest --target "$out"
  stop_server
  rm -rf "$cache" "$out"
}

summarize() {
  python3 - "$RESULTS" <<'PY'
import collections, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
times, kib = collections.defaultdict(list), collections.defaultdict(list)
for run, server, what, secs, k in rows:
    times[(server, what)].append(float(secs))
    kib[(server, what)].append(int(k))
med = {k: statistics.median(v) for k, v in times.items()}
pairs = [("cairn sync", "rclone copy"), ("backup s3", "backup local"), ("restore s3", "restore local")]
for server in sorted({s for s, _ in med}):
    print(f"server {server}")
    for (s, what), m in sorted(med.items()):
        if s == server:
            runs = " ".join(f"{t:.2f}" for t in times[(s, what)])
            rss = statistics.median(kib[(s, what)]) / 1024
            print(f"  {what:14} median {m:7.2f} s  (runs {runs})  peak RSS {rss:7.1f} MiB")
    for a, b in pairs:
        if (server, a) in med and (server, b) in med:
            print(f"  {a} / {b}: {med[(server, a)] / med[(server, b)]:.2f}x")
PY
}

main() {
  mkdir -p "$WORK"
  : >"$WORK/log"
  build
  RESULTS=$WORK/results-$(date +%Y%m%d-%H%M%S).tsv
  : >"$RESULTS"
  if [[ " $STEPS " == *" sync "* ]]; then
    source_repo
    log "source repository: $(du -sb "$SRC" | cut -f1) bytes, $(find "$SRC" -type f | wc -l) files"
    tar -cf - "$SRC" 2>/dev/null | cat >/dev/null # warm the page cache
  fi
  if [[ " $STEPS " == *" remote "* ]]; then
    local d
    for d in $SUBSET; do tar -cf - "$CORPUS/$d" 2>/dev/null | cat >/dev/null; done
    log "backup subset: $(cd "$CORPUS" && du -scb $SUBSET | tail -1 | cut -f1) bytes"
  fi
  log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  for run in $(seq 1 "$RUNS"); do
    for server in $SERVERS; do
      log "run $run/$RUNS on $server (load $(cut -d' ' -f1-3 /proc/loadavg))"
      if [[ " $STEPS " == *" sync "* ]]; then run_sync "$run" "$server"; fi
      if [[ " $STEPS " == *" remote "* ]]; then run_remote "$run" "$server"; fi
    done
  done
  log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  summarize
  log "raw results: $RESULTS"
}

main "$@"
