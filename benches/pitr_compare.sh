#!/usr/bin/env bash
# PostgreSQL continuous archiving and point-in-time recovery: cairn against pgBackRest, on this
# machine, in one run, each tool on its own copy of the same pgbench database.
#
# The database is made once per SCALE (`pgbench -i -s SCALE`, about 15 MB per unit of scale) and
# copied with `cp -a` for every tool, so both start from the same bytes. Each tool then goes
# through one simulated day and a half, on a private PostgreSQL (Debian's package, started here
# as a plain process on 127.0.0.1 as the `postgres` user, fsync=off, full_page_writes on,
# wal_level=replica, max_wal_size=4GB, archive_timeout=0) whose archive_command is the tool's:
#   1. full base backup (cairn: `pg backup`; pgBackRest: `backup --type=full`);
#   2. DURATION seconds of `pgbench -c 4 -j 2 -N` (every accounts page gets written): each second
#      the .ready files in pg_wal/archive_status (the archiver's lag, in segments) and the size
#      of pg_wal are sampled; at DURATION/2 the server's clock_timestamp() becomes the PITR
#      target; afterwards `pg_switch_wal()` and a wait until that segment is archived. "WAL
#      stored" is what the repository grew by over the run and the wait (no backup ran then).
#      pg_wal grows by the WAL written whatever the archiver does, as no checkpoint falls in
#      the run to recycle segments: the .ready count is what tells an archiver falling behind;
#   3. a second base backup (pgBackRest: `--type=incr`);
#   4. an UPDATE of the first 1% of pgbench_accounts (a clustered range), CHECKPOINT, and a third
#      base backup (pgBackRest: `--type=incr` again);
#   5. the server stops; a restore to the target into a new directory (cairn: `pg restore --to`;
#      pgBackRest: `restore --type=time --target-action=promote`), both with archiving off, the
#      server started there on another port, timed until `pg_is_in_recovery()` is false ("restore"
#      is the tool's command, "recovery" the rest: start-up, WAL replay, promotion). Both tools
#      restore the full backup, the newest that ended before the target. The restored
#      pgbench_history is checked against the target: no row newer than it, its newest row less
#      than a second older, and as many rows as the primary had up to the target, less at most
#      the CLIENTS transactions in flight at that instant.
#
# A second phase (skipped with DAYS=0) measures the repository's size after DAYS simulated days
# of daily base backups and continuous archiving. Each tool starts again from a fresh copy of the
# database, with a new repository in $CAIRN_BENCH_DIR/<tool>-week and the same server and
# archive_command as above: a full base backup (day 0), then DAYS times DAY_SECONDS seconds of
# `pgbench -c CLIENTS -j THREADS -N` (a "day") followed by a base backup (cairn: `pg backup`;
# pgBackRest: `backup --type=incr`, its smallest daily backup), so DAYS+1 base backups with WAL
# archived all along; at the end `pg_switch_wal()` and a wait until that segment is archived.
# Nothing is expired: pgBackRest keeps repo1-retention-full=9999999 (its maximum) full backups,
# cairn runs no forget or prune. The repository's size is taken after each day's base backup
# (day 0 first) and at the end; the base backups are counted in the tool's own listing (cairn
# `snapshots`, pgBackRest `info`), their seconds summed and their peak RSS the largest; "WAL
# segments archived" counts the distinct segments archive_command was given (pg_stat_archiver's
# archived_count, in results.tsv as week.archive.files, adds each backup's history file). As
# pgbench runs for a time, the WAL each tool's days wrote differs: it is printed below the table.
#
# Every tool command runs as `postgres` under `/usr/bin/time -f '%e %M'`; archive_command and
# restore_command are wrapped the same way (one line per call, and the call's command line in a
# .cmd file beside), so each step has its seconds and peak RSS. Repository growth is `du -sb` of
# the repository directory before and after (cairn's local cache directory, and pgBackRest's
# spool, are outside it). pgBackRest runs with zstd compression, process-max=2 and
# archive-async=y; its peak is that of its largest process (%M is per process), and its
# asynchronous archive-push/archive-get daemons, which detach, are not measured; nor is the
# background archiver of cairn-async.
#
# Usage: benches/pitr_compare.sh
#   SCALE=100 (pgbench scale) DURATION=60 (seconds of pgbench) TOOLS="cairn pgbackrest"
#   (cairn-async: cairn with `wal push --async`, its background archiver)
#   CLIENTS=4 THREADS=2 (pgbench -c/-j)
#   DAYS=7 (simulated days of the second phase; 0 skips it) DAY_SECONDS=20 (pgbench s per day)
# Work directory: $CAIRN_BENCH_DIR (default /var/tmp/cairn-pitr-bench); the initialized database
# is kept there per SCALE and reused. Needs root (it runs PostgreSQL and the tools as postgres).
# Results: $CAIRN_BENCH_DIR/results.tsv (tool, key, value), the tables in summary.md, logs in
# $CAIRN_BENCH_DIR/<tool>/ and, for the second phase, $CAIRN_BENCH_DIR/<tool>-week/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${CAIRN_BENCH_DIR:-/var/tmp/cairn-pitr-bench}
SCALE=${SCALE:-100}
DURATION=${DURATION:-60}
TOOLS=${TOOLS:-cairn pgbackrest}
CLIENTS=${CLIENTS:-4}
THREADS=${THREADS:-2}
DAYS=${DAYS:-7}
DAY_SECONDS=${DAY_SECONDS:-20}
TEMPLATE=$WORK/template-s$SCALE
RESULTS=$WORK/results.tsv
STANZA=bench

log() { printf '[pitr_compare] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[[ $DAYS =~ ^[0-9]+$ ]] || die "DAYS must be a whole number of days (0 skips the second phase)"
[[ $DAY_SECONDS =~ ^[1-9][0-9]*$ ]] || die "DAY_SECONDS must be a positive whole number"
[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and the tools are started as the postgres user)"

install_tools() {
  local need=()
  [ -x /usr/bin/time ] || need+=(time)
  ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need+=(postgresql postgresql-contrib)
  [[ " $TOOLS " != *" pgbackrest "* ]] || command -v pgbackrest >/dev/null || need+=(pgbackrest)
  if [ ${#need[@]} -gt 0 ]; then apt-get install -y -q "${need[@]}" >/dev/null; fi
  id -u postgres >/dev/null 2>&1 || die "no postgres user (Debian's postgresql package makes it)"
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  if [[ " $TOOLS " == *" cairn "* ]]; then
    log "building cairn (release)"
    cargo build --release --quiet
  fi
}

# Everything the tools and PostgreSQL run as: postgres, with a HOME it can read.
AS_PG=(setpriv --reuid="$(id -u postgres)" --regid="$(id -g postgres)" --clear-groups
  env HOME="$WORK/home")

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

now() { date +%s.%N; }
# since T0 [T1]: seconds from T0 to T1 (default: now).
since() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.3f", b - a }'; }

# q PORT SQL: one query as the superuser, unaligned output.
q() { "$PGBIN/psql" -X -Atq -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"; }

# Settings of every server here, primaries and restored ones alike.
COMMON=(-c listen_addresses=127.0.0.1 -c fsync=off -c wal_level=replica -c max_wal_size=4GB
  -c archive_timeout=0)

SERVERS=()
# start_server DATADIR PORT SOCKETDIR LOGFILE [ARGS...]: starts postgres in the background and
# sets SERVER_PID; does not wait for it to accept connections.
start_server() {
  local data=$1 port=$2 sock=$3 logfile=$4
  shift 4
  setsid "${AS_PG[@]}" "$PGBIN/postgres" -D "$data" -p "$port" -k "$sock" "${COMMON[@]}" "$@" \
    >>"$logfile" 2>&1 </dev/null &
  SERVER_PID=$!
  SERVERS+=("$SERVER_PID")
}

wait_ready() {
  local port=$1 pid=$2 logfile=$3
  for _ in $(seq 300); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres && return
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  tail -20 "$logfile" >&2
  die "PostgreSQL on port $port did not start; see $logfile"
}

# stop_server PID: fast shutdown, waits until the process is gone.
stop_server() {
  local pid=$1
  kill -INT "$pid" 2>/dev/null || return 0
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "PostgreSQL $pid did not stop in 60 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

SAMPLER=
PGBENCH=
cleanup() {
  local pid
  for pid in $SAMPLER $PGBENCH; do kill "$pid" 2>/dev/null || true; done
  for pid in "${SERVERS[@]}"; do stop_server "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# rec TOOL KEY VALUE: one result.
rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"; }

repo_bytes() { du -sb "$T/repo" | cut -f1; }

# timed TOOL STEP CMD...: runs CMD as postgres under /usr/bin/time, output into the tool's log;
# records STEP.s and STEP.kib.
timed() {
  local tool=$1 step=$2 secs kib
  shift 2
  sync
  printf '\n$ %s\n' "$*" >>"$T/tool.log"
  if ! /usr/bin/time -f '%e %M' -o "$T/time.out" "${AS_PG[@]}" "$@" >>"$T/tool.log" 2>&1; then
    tail -20 "$T/tool.log" >&2
    die "$tool $step failed: $*; see $T/tool.log"
  fi
  read -r secs kib <"$T/time.out"
  rec "$tool" "$step.s" "$secs"
  rec "$tool" "$step.kib" "$kib"
}

# The pgbench database every tool starts from, made once per SCALE.
make_template() {
  if [ -f "$TEMPLATE/done" ]; then return; fi
  log "initializing a pgbench database at scale $SCALE"
  rm -rf "$TEMPLATE"
  mkdir -p "$TEMPLATE"
  chown postgres: "$TEMPLATE"
  "${AS_PG[@]}" "$PGBIN/initdb" -D "$TEMPLATE/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
    --no-sync >"$TEMPLATE/initdb.log" 2>&1
  local port
  port=$(free_port)
  start_server "$TEMPLATE/data" "$port" "$TEMPLATE" "$TEMPLATE/server.log"
  wait_ready "$port" "$SERVER_PID" "$TEMPLATE/server.log"
  "$PGBIN/pgbench" -q -i -s "$SCALE" -h 127.0.0.1 -p "$port" -U postgres postgres \
    >"$TEMPLATE/pgbench-init.log" 2>&1
  q "$port" "CHECKPOINT" >/dev/null
  stop_server "$SERVER_PID"
  touch "$TEMPLATE/done"
}

# An executable that runs a command under /usr/bin/time, appending "seconds peak-KiB" to a file,
# and the command line to that file's name with .cmd added: wraps archive_command and
# restore_command, so each call of the tool is measured, and the files it got are known.
write_wrapper() {
  cat >"$T/timed" <<'EOF'
#!/bin/sh
# timed LOG CMD...: runs CMD, appends its seconds and peak RSS (KiB) to LOG and CMD itself to
# LOG.cmd; exits as CMD does.
log=$1
shift
printf '%s\n' "$*" >>"$log.cmd"
exec /usr/bin/time -a -o "$log" -f '%e %M' "$@"
EOF
  chmod 755 "$T/timed"
}

# setup_tool TOOL KEEP_FULL: the repository, and the commands PostgreSQL runs. KEEP_FULL is
# pgBackRest's repo1-retention-full (its expire runs after every backup); cairn expires nothing
# unless told to by forget/prune, which nothing here runs.
setup_tool() {
  local tool=$1 keep_full=$2
  case $tool in
    cairn | cairn-async)
      cp "$ROOT/target/release/cairn" "$T/cairn"
      printf 'pitr-bench-password\n' >"$T/pw"
      chmod 600 "$T/pw"
      chown postgres: "$T/cairn" "$T/pw"
      TOOL=("$T/cairn" -r "$T/repo" --cache-dir "$T/cache" --password-file "$T/pw")
      "${AS_PG[@]}" "${TOOL[@]}" -q init >>"$T/tool.log" 2>&1
      local push=(wal push)
      [ "$tool" = cairn-async ] && push+=(--async)
      ARCHIVE_COMMAND="$T/timed $T/push.times ${TOOL[*]} ${push[*]} %p"
      ;;
    pgbackrest)
      cat >"$T/pgbackrest.conf" <<EOF
[global]
repo1-path=$T/repo
repo1-retention-full=$keep_full
compress-type=zst
process-max=2
archive-async=y
spool-path=$T/spool
start-fast=y
log-level-console=warn
log-level-file=info
log-path=$T/pgbr-log
lock-path=$T/pgbr-lock

[$STANZA]
pg1-path=$T/data
pg1-port=$PORT
pg1-socket-path=$T
EOF
      mkdir -p "$T/repo" "$T/spool" "$T/pgbr-log" "$T/pgbr-lock"
      chown -R postgres: "$T"
      TOOL=(pgbackrest --config="$T/pgbackrest.conf" --stanza="$STANZA")
      ARCHIVE_COMMAND="$T/timed $T/push.times ${TOOL[*]} archive-push %p"
      ;;
    *) die "unknown tool $tool (known: cairn pgbackrest)" ;;
  esac
}

base_backup() {
  local tool=$1 step=$2 kind=$3 before
  before=$(repo_bytes)
  case $tool in
    cairn | cairn-async) timed "$tool" "$step" env PGHOST=127.0.0.1 PGPORT="$PORT" PGUSER=postgres PGDATABASE=postgres \
      "${TOOL[@]}" --json pg backup --pgdata "$T/data" --tag "$step" ;;
    pgbackrest) timed "$tool" "$step" "${TOOL[@]}" --type="$kind" backup ;;
  esac
  rec "$tool" "$step.bytes" "$(($(repo_bytes) - before))"
}

# pgbench_start SECONDS LOGFILE: the write-only pgbench load in the background, its pid in PGBENCH.
pgbench_start() {
  "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -N -c "$CLIENTS" -j "$THREADS" \
    -T "$1" postgres >"$2" 2>&1 &
  PGBENCH=$!
}

# pgbench_wait LOGFILE: waits for PGBENCH (in this shell, its parent); sets TPS from its report.
pgbench_wait() {
  wait "$PGBENCH" || { cat "$1" >&2; die "pgbench failed; see $1"; }
  PGBENCH=
  TPS=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$1" | tail -n 1)
}

# switch_wal TOOL: closes the current WAL segment with pg_switch_wal() and waits (at most 600 s)
# until the archiver reports it archived.
switch_wal() {
  local tool=$1 seg
  seg=$(q "$PORT" "SELECT pg_walfile_name(pg_switch_wal())")
  for _ in $(seq 6000); do
    [ "$(q "$PORT" "SELECT coalesce(last_archived_wal, '') >= '$seg' FROM pg_stat_archiver")" = t ] && return
    sleep 0.1
  done
  die "$tool: $seg not archived 600 s after pg_switch_wal(); see $T/server.log"
}

# Samples the archiver's lag (.ready files) and pg_wal's size once a second until killed.
sample_wal() {
  local ready bytes
  while :; do
    ready=$(find "$T/data/pg_wal/archive_status" -name '*.ready' 2>/dev/null | wc -l)
    bytes=$(du -sb "$T/data/pg_wal" 2>/dev/null | cut -f1)
    printf '%s %s %s\n' "$(now)" "$ready" "$bytes" >>"$T/wal.samples"
    sleep 1
  done
}

# The pgbench run with the archiver sampled, the PITR target taken in its middle, and the wait
# until everything it wrote is archived.
busy_minute() {
  local tool=$1 before lsn0 lsn1 t0 failed0 archived0
  before=$(repo_bytes)
  lsn0=$(q "$PORT" "SELECT pg_current_wal_lsn()")
  failed0=$(q "$PORT" "SELECT failed_count FROM pg_stat_archiver")
  archived0=$(q "$PORT" "SELECT archived_count FROM pg_stat_archiver")
  : >"$T/wal.samples"
  sample_wal &
  SAMPLER=$!
  pgbench_start "$DURATION" "$T/pgbench.log"
  sleep $((DURATION / 2))
  TARGET=$(q "$PORT" "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
  rec "$tool" target "$TARGET"
  pgbench_wait "$T/pgbench.log"
  rec "$tool" tps "$TPS"
  kill "$SAMPLER"
  wait "$SAMPLER" 2>/dev/null || true
  SAMPLER=
  lsn1=$(q "$PORT" "SELECT pg_current_wal_lsn()")
  rec "$tool" wal_written.bytes "$(q "$PORT" "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint")"
  rec "$tool" lag.max "$(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { print m }' "$T/wal.samples")"
  rec "$tool" pg_wal.start "$(head -n 1 "$T/wal.samples" | cut -d' ' -f3)"
  rec "$tool" pg_wal.max "$(awk 'BEGIN { m = 0 } $3 > m { m = $3 } END { print m }' "$T/wal.samples")"
  # Everything written so far into the archive: the segment pg_switch_wal() closes.
  t0=$(now)
  switch_wal "$tool"
  rec "$tool" drain.s "$(since "$t0")"
  rec "$tool" archive.failed "$(($(q "$PORT" "SELECT failed_count FROM pg_stat_archiver") - failed0))"
  rec "$tool" archive.segments "$(($(q "$PORT" "SELECT archived_count FROM pg_stat_archiver") - archived0))"
  rec "$tool" wal_stored.bytes "$(($(repo_bytes) - before))"
}

# Restore to TARGET into a new directory, start PostgreSQL there, time until it is promoted, and
# check its pgbench_history against the primary's.
pitr() {
  local tool=$1 restored=$T/restored port t0 t1 t2 state pid
  rm -rf "$restored"
  "${AS_PG[@]}" mkdir -m 700 "$restored"
  t0=$(now)
  case $tool in
    cairn | cairn-async) timed "$tool" restore "${TOOL[@]}" pg restore --to "${TARGET/ /T}Z" --target "$restored" --archive-off ;;
    pgbackrest) timed "$tool" restore "${TOOL[@]}" restore --type=time --target="$TARGET+00" \
      --target-action=promote --archive-mode=off --pg1-path="$restored" ;;
  esac
  t1=$(now)
  # Each restore_command call timed like archive_command's.
  "${AS_PG[@]}" sed -i "s|^restore_command = '|restore_command = '$T/timed $T/fetch.times |" "$restored/postgresql.auto.conf"
  grep -q "^restore_command = '$T/timed" "$restored/postgresql.auto.conf" ||
    die "$tool restore wrote no restore_command into $restored/postgresql.auto.conf"
  port=$(free_port)
  start_server "$restored" "$port" "$T" "$T/restored.log"
  pid=$SERVER_PID
  for _ in $(seq 36000); do
    state=$(q "$port" "SELECT pg_is_in_recovery()" 2>/dev/null || true)
    [ "$state" = f ] && break
    kill -0 "$pid" 2>/dev/null || { tail -20 "$T/restored.log" >&2; die "$tool: restored server exited; see $T/restored.log"; }
    sleep 0.1
  done
  [ "$state" = f ] || die "$tool: restored server still in recovery after an hour"
  t2=$(now)
  rec "$tool" pitr.restore.s "$(since "$t0" "$t1")"
  rec "$tool" pitr.recovery.s "$(since "$t1" "$t2")"
  rec "$tool" pitr.total.s "$(since "$t0" "$t2")"
  local at="timestamptz '$TARGET+00'" rows newer lag
  rows=$(q "$port" "SELECT count(*) FROM pgbench_history")
  newer=$(q "$port" "SELECT count(*) FROM pgbench_history WHERE mtime::timestamptz > $at")
  lag=$(q "$port" "SELECT coalesce(extract(epoch FROM $at - max(mtime)::timestamptz), 1e9) FROM pgbench_history")
  rec "$tool" restored.rows "$rows"
  rec "$tool" restored.newer "$newer"
  rec "$tool" restored.lag.s "$lag"
  stop_server "$pid"
  local ok=yes
  [ "$newer" = 0 ] || ok="no: $newer rows newer than the target"
  awk -v l="$lag" 'BEGIN { exit !(l < 1) }' || ok="no: newest row $lag s before the target"
  [ "$rows" -le "$PRIMARY_UPTO" ] && [ "$rows" -ge $((PRIMARY_UPTO - CLIENTS)) ] ||
    ok="no: $rows rows, the primary had $PRIMARY_UPTO up to the target"
  [ "$rows" -gt 0 ] && [ "$rows" -lt "$PRIMARY_ROWS" ] || ok="no: $rows rows of $PRIMARY_ROWS"
  rec "$tool" restored.ok "$ok"
  [ "$ok" = yes ] || log "$tool: the restored database does not match the target ($ok)"
}

# start_primary TOOL DIR KEEP_FULL: in DIR (made afresh, and T from now on), a copy of the
# template database, the tool's empty repository and PostgreSQL archiving into it on a free
# PORT; sets PRIMARY to the server's pid.
start_primary() {
  local tool=$1 keep_full=$3
  T=$2
  rm -rf "$T"
  mkdir -p "$T"
  log "$tool: copying the scale-$SCALE database into $T"
  cp -a "$TEMPLATE/data" "$T/data"
  chown postgres: "$T"
  PORT=$(free_port)
  write_wrapper
  setup_tool "$tool" "$keep_full"
  start_server "$T/data" "$PORT" "$T" "$T/server.log" -c archive_mode=on \
    -c "archive_command=$ARCHIVE_COMMAND"
  PRIMARY=$SERVER_PID
  wait_ready "$PORT" "$PRIMARY" "$T/server.log"
  if [ "$tool" = pgbackrest ]; then
    "${AS_PG[@]}" "${TOOL[@]}" stanza-create >>"$T/tool.log" 2>&1 || die "pgbackrest stanza-create failed; see $T/tool.log"
  fi
}

run_tool() {
  local tool=$1
  start_primary "$tool" "$WORK/$tool" 2
  local primary=$PRIMARY
  log "$tool: full base backup"
  base_backup "$tool" full full
  log "$tool: $DURATION s of pgbench -c $CLIENTS -j $THREADS -N"
  busy_minute "$tool"
  log "$tool: second base backup"
  base_backup "$tool" day2 incr
  log "$tool: 1% update, third base backup"
  q "$PORT" "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= $((SCALE * 1000))" >/dev/null
  q "$PORT" "CHECKPOINT" >/dev/null
  base_backup "$tool" update1 incr
  PRIMARY_ROWS=$(q "$PORT" "SELECT count(*) FROM pgbench_history")
  PRIMARY_UPTO=$(q "$PORT" "SELECT count(*) FROM pgbench_history WHERE mtime::timestamptz <= timestamptz '$TARGET+00'")
  rec "$tool" primary.rows "$PRIMARY_ROWS"
  rec "$tool" primary.upto "$PRIMARY_UPTO"
  rec "$tool" archive.failed_total "$(q "$PORT" "SELECT failed_count FROM pg_stat_archiver")"
  # What is still connected when the primary stops (nothing should be, backups included).
  q "$PORT" "SELECT pid, backend_type, application_name, state, left(query, 80)
    FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'" \
    >"$T/activity-at-stop.txt"
  stop_server "$primary"
  log "$tool: point-in-time recovery to $TARGET UTC"
  pitr "$tool"
  # What each archive_command and restore_command call took: seconds and peak KiB per line
  # (/usr/bin/time adds a line of its own for a failed call).
  local f
  for f in push fetch; do
    rec "$tool" "$f.calls" "$(grep -cE '^[0-9.]+ [0-9]+$' "$T/$f.times" || true)"
    rec "$tool" "$f.max.s" "$(awk '/^[0-9.]+ [0-9]+$/ && $1 > m { m = $1 } END { print m + 0 }' "$T/$f.times")"
    rec "$tool" "$f.kib" "$(awk '/^[0-9.]+ [0-9]+$/ && $2 > m { m = $2 } END { print m + 0 }' "$T/$f.times")"
  done
  rec "$tool" repo.bytes "$(repo_bytes)"
  case $tool in
    cairn | cairn-async)
      "${AS_PG[@]}" "${TOOL[@]}" --json wal list >"$T/wal-list.json" 2>>"$T/tool.log" || true
      "${AS_PG[@]}" "${TOOL[@]}" --json snapshots >"$T/snapshots.json" 2>>"$T/tool.log" || true
      ;;
    pgbackrest) "${AS_PG[@]}" "${TOOL[@]}" info >"$T/info.txt" 2>>"$T/tool.log" || true ;;
  esac
  # The data directories are the bulk; the repository and the logs stay for a look.
  rm -rf "$T/data" "$T/restored"
}

# The second phase: DAYS simulated days of base backups and archiving, nothing expired.
run_week() {
  local tool=$1 day archived0 failed0 lsn0
  start_primary "$tool" "$WORK/$tool-week" 9999999
  lsn0=$(q "$PORT" "SELECT pg_current_wal_lsn()")
  archived0=$(q "$PORT" "SELECT archived_count FROM pg_stat_archiver")
  failed0=$(q "$PORT" "SELECT failed_count FROM pg_stat_archiver")
  log "$tool: week, day 0: full base backup"
  base_backup "$tool" week.day0 full
  rec "$tool" week.day0.repo.bytes "$(repo_bytes)"
  for day in $(seq "$DAYS"); do
    log "$tool: week, day $day of $DAYS: $DAY_SECONDS s of pgbench -c $CLIENTS -j $THREADS -N, base backup"
    pgbench_start "$DAY_SECONDS" "$T/pgbench-day$day.log"
    pgbench_wait "$T/pgbench-day$day.log"
    rec "$tool" "week.day$day.tps" "$TPS"
    rec "$tool" "week.day$day.xacts" \
      "$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/pgbench-day$day.log")"
    base_backup "$tool" "week.day$day" incr
    rec "$tool" "week.day$day.repo.bytes" "$(repo_bytes)"
  done
  # WAL written, up to the switch (which would round it up to a whole segment).
  rec "$tool" week.wal_written.bytes \
    "$(q "$PORT" "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0')::bigint")"
  switch_wal "$tool"
  # archived_count counts the backup history files (*.backup) too; the segments are the distinct
  # WAL file names archive_command was given (a retried one counts once).
  rec "$tool" week.archive.files "$(($(q "$PORT" "SELECT archived_count FROM pg_stat_archiver") - archived0))"
  rec "$tool" week.archive.segments "$(grep -oE '/[0-9A-F]{24}$' "$T/push.times.cmd" | sort -u | wc -l)"
  rec "$tool" week.archive.failed "$(($(q "$PORT" "SELECT failed_count FROM pg_stat_archiver") - failed0))"
  rec "$tool" week.repo.bytes "$(repo_bytes)"
  # The base backups' seconds summed, and the largest peak, from what base_backup recorded.
  rec "$tool" week.backup.s "$(awk -F'\t' -v t="$tool" '$1 == t && $2 ~ /^week\.day[0-9]+\.s$/ { s += $3 }
    END { printf "%.2f", s }' "$RESULTS")"
  rec "$tool" week.backup.kib "$(awk -F'\t' -v t="$tool" '$1 == t && $2 ~ /^week\.day[0-9]+\.kib$/ && $3 > m { m = $3 }
    END { print m + 0 }' "$RESULTS")"
  # How many base backups the repository holds, by the tool's own account.
  local count
  case $tool in
    cairn | cairn-async)
      "${AS_PG[@]}" "${TOOL[@]}" --json snapshots >"$T/snapshots.json" 2>>"$T/tool.log" ||
        die "cairn snapshots failed; see $T/tool.log"
      count=$(python3 -c 'import json, sys; print(sum(1 for s in json.load(open(sys.argv[1])) if s.get("postgres")))' "$T/snapshots.json")
      ;;
    pgbackrest)
      "${AS_PG[@]}" "${TOOL[@]}" info >"$T/info.txt" 2>>"$T/tool.log" || true
      "${AS_PG[@]}" "${TOOL[@]}" --output=json info >"$T/info.json" 2>>"$T/tool.log" ||
        die "pgbackrest info failed; see $T/tool.log"
      count=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))[0]["backup"]))' "$T/info.json")
      ;;
  esac
  rec "$tool" week.backups "$count"
  [ "$count" = $((DAYS + 1)) ] || log "$tool: the repository lists $count base backups, not $((DAYS + 1))"
  stop_server "$PRIMARY"
  rm -rf "$T/data"
}

summarize() {
  python3 - "$RESULTS" "$SCALE" "$DURATION" "$DAYS" "$DAY_SECONDS" <<'EOF'
import sys, collections
results, scale, duration = sys.argv[1], sys.argv[2], sys.argv[3]
days, day_seconds = int(sys.argv[4]), sys.argv[5]
r = collections.defaultdict(dict)
tools = []
for line in open(results):
    tool, key, value = line.rstrip("\n").split("\t")
    if tool not in tools:
        tools.append(tool)
    r[tool][key] = value
f = lambda t, k: float(r[t][k])
mb = lambda t, k: f"{f(t, k) / 1e6:.0f}"
mib = lambda t, k: f"{f(t, k) / 1024:.0f}"
s = lambda t, k: f"{f(t, k):.1f}"
steps = ["full", "day2", "update1", "restore", "push", "fetch"]
print(f"pgbench scale {scale}, {duration} s of pgbench -N; PITR target in its middle")
print()
print("| tool | full backup s / MB / peak MiB | archiver max lag (segments) / failures / WAL MB stored "
      "| day-2 backup s / MB | 1%-update backup s / MB | PITR s (restore + recovery) | peak MiB |")
print("|---|---|---|---|---|---|---|")
for t in tools:
    peak = max(f(t, f"{k}.kib") for k in steps) / 1024
    print(f"| {t} | {s(t, 'full.s')} / {mb(t, 'full.bytes')} / {mib(t, 'full.kib')} "
          f"| {r[t]['lag.max']} / {r[t]['archive.failed']} / {mb(t, 'wal_stored.bytes')} "
          f"| {s(t, 'day2.s')} / {mb(t, 'day2.bytes')} | {s(t, 'update1.s')} / {mb(t, 'update1.bytes')} "
          f"| {s(t, 'pitr.total.s')} ({s(t, 'pitr.restore.s')} + {s(t, 'pitr.recovery.s')}) | {peak:.0f} |")
print()
print("| tool | tps | WAL written MB (segments archived) | pg_wal MB start / max | drain s "
      "| archive_command calls / slowest s / peak MiB | restore_command calls / peak MiB "
      "| peak MiB backups (full, day 2, 1%) / restore | restored rows (primary up to target) / check |")
print("|---|---|---|---|---|---|---|---|---|")
for t in tools:
    print(f"| {t} | {s(t, 'tps')} | {mb(t, 'wal_written.bytes')} ({r[t]['archive.segments']}) "
          f"| {mb(t, 'pg_wal.start')} / {mb(t, 'pg_wal.max')} | {s(t, 'drain.s')} "
          f"| {r[t]['push.calls']} / {s(t, 'push.max.s')} / {mib(t, 'push.kib')} "
          f"| {r[t]['fetch.calls']} / {mib(t, 'fetch.kib')} "
          f"| {mib(t, 'full.kib')}, {mib(t, 'day2.kib')}, {mib(t, 'update1.kib')} / {mib(t, 'restore.kib')} "
          f"| {r[t]['restored.rows']} ({r[t]['primary.upto']}) / {r[t]['restored.ok']} |")
week = [t for t in tools if "week.repo.bytes" in r[t]]
if week:
    mb1 = lambda t, k: f"{f(t, k) / 1e6:.1f}"
    print()
    print(f"pgbench scale {scale}, {days} simulated days: a full base backup, then each day "
          f"{day_seconds} s of pgbench -N and a base backup; WAL archived throughout, nothing expired")
    print()
    print(f"| tool | repository after {days} days MB | per day (MB, list) "
          "| base backups: count / total s / peak MiB | WAL segments archived |")
    print("|---|---|---|---|---|")
    for t in week:
        per_day = ", ".join(mb1(t, f"week.day{d}.repo.bytes") for d in range(days + 1))
        print(f"| {t} | {mb1(t, 'week.repo.bytes')} | {per_day} "
              f"| {r[t]['week.backups']} / {s(t, 'week.backup.s')} / {mib(t, 'week.backup.kib')} "
              f"| {r[t]['week.archive.segments']} |")
    # pgbench runs for a time, not a number of transactions: what each tool's days wrote differs.
    print()
    print("WAL written over the days MB / pgbench transactions: " + "; ".join(
        f"{t} {f(t, 'week.wal_written.bytes') / 1e6:.0f} / "
        f"{sum(int(r[t][f'week.day{d}.xacts']) for d in range(1, days + 1))}" for t in week))
EOF
}

mkdir -p "$WORK/home"
chown postgres: "$WORK/home"
install_tools
make_template
: >"$RESULTS"
for tool in $TOOLS; do
  run_tool "$tool"
done
if [ "$DAYS" -gt 0 ]; then
  for tool in $TOOLS; do
    run_week "$tool"
  done
fi
summarize | tee "$WORK/summary.md"
