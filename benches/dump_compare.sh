#!/usr/bin/env bash
# Nightly PostgreSQL dumps into cairn, restic, rustic and Borg, on this machine, in one run.
#
# A private PostgreSQL (Debian's package, started here as a plain process on 127.0.0.1) holds a
# pgbench database whose rows carry random text; every simulated night runs an OLTP-like workload
# on its accounts table and `pg_dump` writes the night's dump:
#   - 0.1% of the rows updated at random places (pgbench's TPC-B-like transactions, which also
#     append to pgbench_history);
#   - 0.1% of the rows deleted at random places;
#   - 1% of the rows updated among the newest 4% (recent orders changing status);
#   - 2% new rows appended;
#   - VACUUM, so later updates fill the holes: PostgreSQL writes a row version where there is
#     room, which moves rows in the dump's order.
# Every tool backs up the same dump files from standard input, one repository per tool. The
# floor is `zstd -3 --long=30 --patch-from=<previous night>` of each night: what the night
# really changed. Printed: per night and in total, the bytes each repository grew by and the
# backup time; restore time of night 1 and of the last night; peak memory.
#
# Usage: benches/dump_compare.sh
#   NIGHTS=30 SCALE=40 (pgbench scale: 100,000 accounts each, about 10 MB of night-1 dump, 5 MB
#   of it zstd-compressed) TOOLS="cairn restic rustic borg"
#   CAIRN_REPOS=3: cairn's bytes depend on where its chunks are cut, and a repository's chunking
#   seed is drawn at `init`: cairn backs up every night into this many repositories (timed in the
#   first only) and the summary gives the median and the range of what they stored.
# Work directory: $CAIRN_BENCH_DIR (default /var/tmp/cairn-dump-bench); the dumps are made once
# per NIGHTS/SCALE and reused. Restores write under $RESTORE_DIR (default /dev/shm).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${CAIRN_BENCH_DIR:-/var/tmp/cairn-dump-bench}
RESTORE_DIR=${RESTORE_DIR:-/dev/shm}
NIGHTS=${NIGHTS:-30}
SCALE=${SCALE:-40}
TOOLS=${TOOLS:-cairn restic rustic borg}
CAIRN_REPOS=${CAIRN_REPOS:-3}
DUMPS=$WORK/dumps-n$NIGHTS-s$SCALE
RESULTS=$WORK/results.tsv

log() { printf '[dump_compare] %s\n' "$*" >&2; }

install_tools() {
  local need=()
  [ -x /usr/bin/time ] || need+=(time)
  command -v zstd >/dev/null || need+=(zstd)
  ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need+=(postgresql postgresql-contrib)
  [[ " $TOOLS " != *" restic "* ]] || command -v restic >/dev/null || need+=(restic)
  [[ " $TOOLS " != *" borg "* ]] || command -v borg >/dev/null || need+=(borgbackup)
  if [ ${#need[@]} -gt 0 ]; then apt-get install -y -q "${need[@]}" >/dev/null; fi
  if [[ " $TOOLS " == *" rustic "* ]] && ! command -v rustic >/dev/null; then
    log "installing rustic (cargo install rustic-rs; takes a while)"
    cargo install rustic-rs --no-default-features --locked >/dev/null
  fi
  log "building cairn (release)"
  cargo build --release --quiet
  CAIRN=$ROOT/target/release/cairn
}

# Starts PostgreSQL in $WORK/pg as the package's user (postgres refuses root); sets PG* for psql.
start_postgres() {
  local bin run_as
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  PGBIN=$bin
  run_as=postgres
  id -u "$run_as" >/dev/null 2>&1 || run_as=nobody
  as_pg() { setpriv --reuid="$(id -u "$run_as")" --regid="$(id -g "$run_as")" --clear-groups "$@"; }
  rm -rf "$WORK/pg"
  mkdir -p "$WORK/pg"
  chown "$run_as" "$WORK/pg"
  as_pg "$bin/initdb" -D "$WORK/pg/data" -U bench -A trust -E UTF8 --locale=C.UTF-8 --no-sync \
    >"$WORK/pg/initdb.log" 2>&1
  PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  setsid setpriv --reuid="$(id -u "$run_as")" --regid="$(id -g "$run_as")" --clear-groups \
    "$bin/postgres" -D "$WORK/pg/data" -p "$PGPORT" -k "$WORK/pg" -c listen_addresses=127.0.0.1 \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off >"$WORK/pg/log" 2>&1 </dev/null &
  echo $! >"$WORK/pg/pid"
  export PGHOST=127.0.0.1 PGPORT PGUSER=bench PGDATABASE=postgres
  for _ in $(seq 100); do "$bin/pg_isready" -q && return; sleep 0.2; done
  log "PostgreSQL did not start"; cat "$WORK/pg/log" >&2; exit 1
}

stop_postgres() {
  if [ -f "$WORK/pg/pid" ]; then kill "$(cat "$WORK/pg/pid")" 2>/dev/null || true; rm -f "$WORK/pg/pid"; fi
}

make_dumps() {
  if [ -f "$DUMPS/done" ]; then return; fi
  log "making $NIGHTS nightly dumps of a pgbench database at scale $SCALE"
  rm -rf "$DUMPS"
  mkdir -p "$DUMPS"
  start_postgres
  trap stop_postgres EXIT
  "$PGBIN/pgbench" -q -i -s "$SCALE" >"$WORK/pg/pgbench-init.log" 2>&1
  # pgbench fills its rows with blanks, which compress to nothing; real rows hold text.
  "$PGBIN/psql" -q -c "UPDATE pgbench_accounts SET filler = md5(random()::text) || md5(aid::text)" >/dev/null
  "$PGBIN/psql" -q -c "VACUUM FULL ANALYZE" >/dev/null
  local rows=$((SCALE * 100000)) top
  for n in $(seq 1 "$NIGHTS"); do
    if [ "$n" -gt 1 ]; then
      "$PGBIN/pgbench" -n -c 2 -j 2 -t $((rows / 2000)) >>"$WORK/pg/pgbench.log" 2>&1
      top=$("$PGBIN/psql" -Atq -c "SELECT max(aid) FROM pgbench_accounts")
      "$PGBIN/psql" -q >/dev/null <<SQL
DELETE FROM pgbench_accounts WHERE aid IN
  (SELECT (random() * $top)::int FROM generate_series(1, $((rows / 1000))));
UPDATE pgbench_accounts SET abalance = abalance + 1
  WHERE aid > $top - $((rows / 25)) AND aid % 4 = $((n % 4));
INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
  SELECT $top + g, 1 + g % $SCALE, 0, md5(random()::text) || md5(g::text)
  FROM generate_series(1, $((rows / 50))) g;
VACUUM;
SQL
    fi
    "$PGBIN/pg_dump" >"$DUMPS/night$n.sql"
  done
  stop_postgres
  trap - EXIT
  touch "$DUMPS/done"
}

floors() {
  zstd -q -3 -c "$DUMPS/night1.sql" | wc -c >"$DUMPS/floor1"
  for n in $(seq 2 "$NIGHTS"); do
    zstd -q -3 --long=30 --patch-from="$DUMPS/night$((n - 1)).sql" -c "$DUMPS/night$n.sql" | wc -c \
      >"$DUMPS/floor$n"
  done
}

# timed TOOL WHAT CMD...: runs CMD (stdin inherited) under /usr/bin/time, appends a result row.
timed() {
  local tool=$1 what=$2
  shift 2
  sync
  if ! /usr/bin/time -f '%e %M' -o "$WORK/time.out" "$@" >>"$WORK/log/$tool.log" 2>&1; then
    log "$tool $what failed; see $WORK/log/$tool.log"
    tail -5 "$WORK/log/$tool.log" >&2
    exit 1
  fi
  read -r secs kib <"$WORK/time.out"
  printf '%s\t%s\t%s\t%s\n' "$tool" "$what" "$secs" "$kib" >>"$RESULTS"
}

backup_cmd() {
  local tool=$1 n=$2
  case $tool in
    cairn) echo "$CAIRN -q -r $REPO --cache-dir $CACHE backup --stdin --stdin-name db.sql --tag night$n" ;;
    restic) echo "restic -q -r $REPO --cache-dir $CACHE backup --stdin --stdin-filename db.sql --tag night$n" ;;
    # --force: rustic 0.11 otherwise takes a stdin file with a parent as unchanged
    # (rustic-rs/rustic#1793).
    rustic) echo "rustic --no-progress -r $REPO --cache-dir $CACHE backup --force - --stdin-filename db.sql --tag night$n" ;;
    borg) echo "borg create --compression zstd,3 --stdin-name db.sql $REPO::night$n -" ;;
  esac
}

restore_night() {
  local tool=$1 n=$2 out=$RESTORE_DIR/dump-compare-$tool
  rm -rf "$out"
  mkdir -p "$out"
  case $tool in
    cairn) timed "$tool" "restore$n" $CAIRN -q -r "$REPO" --cache-dir "$CACHE" restore latest --tag "night$n" --target "$out" ;;
    restic) timed "$tool" "restore$n" restic -q -r "$REPO" --cache-dir "$CACHE" restore latest --tag "night$n" --target "$out" ;;
    rustic) timed "$tool" "restore$n" rustic --no-progress -r "$REPO" --cache-dir "$CACHE" restore latest --filter-tags "night$n" "$out" ;;
    borg) (cd "$out" && timed "$tool" "restore$n" borg extract "$REPO::night$n") ;;
  esac
  cmp "$out/db.sql" "$DUMPS/night$n.sql" || { log "$tool restored night $n wrong"; exit 1; }
  rm -rf "$out"
}

# run_tool TOOL [LABEL]: every night into a new repository of TOOL, recorded under LABEL (default
# TOOL); only an unlabelled run restores.
run_tool() {
  local tool=$1 label=${2:-$1}
  REPO=$WORK/repo-$label CACHE=$WORK/cache-$label
  rm -rf "$REPO" "$CACHE"
  export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench RUSTIC_PASSWORD=bench BORG_PASSPHRASE=bench
  case $tool in
    cairn) $CAIRN -q -r "$REPO" --cache-dir "$CACHE" init ;;
    restic) restic -q -r "$REPO" --cache-dir "$CACHE" init ;;
    rustic) rustic --no-progress -r "$REPO" --cache-dir "$CACHE" init ;;
    borg) borg init -e repokey "$REPO" ;;
  esac >>"$WORK/log/$tool.log" 2>&1
  local before after
  for n in $(seq 1 "$NIGHTS"); do
    before=$(du -sb "$REPO" | cut -f1)
    # shellcheck disable=SC2046
    timed "$label" "backup$n" $(backup_cmd "$tool" "$n") <"$DUMPS/night$n.sql"
    after=$(du -sb "$REPO" | cut -f1)
    printf '%s\tadded%s\t%s\t0\n' "$label" "$n" "$((after - before))" >>"$RESULTS"
  done
  if [ "$label" = "$tool" ]; then
    restore_night "$tool" 1
    restore_night "$tool" "$NIGHTS"
  fi
  rm -rf "$REPO" "$CACHE"
}

summarize() {
  python3 - "$RESULTS" "$DUMPS" "$NIGHTS" <<'EOF'
import sys, collections
results, dumps, nights = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = collections.defaultdict(dict)
tools = []
for line in open(results):
    tool, what, value, kib = line.rstrip("\n").split("\t")
    if tool not in tools and "#" not in tool:
        tools.append(tool)
    rows[tool][what] = (float(value), int(kib))
floor = [int(open(f"{dumps}/floor{n}").read()) for n in range(1, nights + 1)]
size = [__import__("os").path.getsize(f"{dumps}/night{n}.sql") for n in range(1, nights + 1)]
mb = lambda b: f"{b / 1e6:.2f}"
print(f"dumps: {mb(size[0])} MB (night 1) to {mb(size[-1])} MB (night {nights})")
print("| night | floor (MB) | " + " | ".join(f"{t} added (MB)" for t in tools) + " |")
print("|---|---|" + "---|" * len(tools))
for n in range(1, nights + 1):
    if n > 3 and n < nights - 1 and n % 5:
        continue
    print(f"| {n} | {mb(floor[n - 1])} | " + " | ".join(mb(rows[t][f'added{n}'][0]) for t in tools) + " |")
total_floor = sum(floor)
print(f"| total | {mb(total_floor)} | " + " | ".join(mb(sum(rows[t][f'added{n}'][0] for n in range(1, nights + 1))) for t in tools) + " |")
print()
print("| tool | night 2 / floor | total / floor | backup s (median of nights 2..) | peak MiB | restore night 1 s | restore night %d s |" % nights)
print("|---|---|---|---|---|---|---|")
for t in tools:
    r = rows[t]
    backups = sorted(r[f"backup{n}"][0] for n in range(2, nights + 1)) or [r["backup1"][0]]
    peak = max(v[1] for k, v in r.items() if k.startswith(("backup", "restore"))) / 1024
    total = sum(r[f"added{n}"][0] for n in range(1, nights + 1))
    print(f"| {t} | {r['added2'][0] / floor[1]:.2f} | {total / total_floor:.2f} | {backups[len(backups) // 2]:.2f} | {peak:.0f} | "
          f"{r['restore1'][0]:.2f} | {r[f'restore{nights}'][0]:.2f} |")
repos = [t for t in rows if t == "cairn" or t.startswith("cairn#")]
if len(repos) > 1:
    def spread(values, scale):
        v = sorted(values)
        return f"median {v[len(v) // 2] / scale:.2f} (from {v[0] / scale:.2f} to {v[-1] / scale:.2f})"
    night2 = [rows[t]["added2"][0] for t in repos]
    totals = [sum(rows[t][f"added{n}"][0] for n in range(1, nights + 1)) for t in repos]
    print()
    print(f"cairn in {len(repos)} repositories (each cuts chunks with its own seed):")
    print(f"- night 2: {spread(night2, 1e6)} MB; against its floor, {spread(night2, floor[1])}")
    print(f"- all nights: {spread(totals, 1e6)} MB; against the floor, {spread(totals, total_floor)}")
    if "rustic" in rows:
        print(f"- night 2 against rustic's: 1/{rows['rustic']['added2'][0] / sorted(night2)[len(night2) // 2]:.1f} (median)")
EOF
}

mkdir -p "$WORK/log"
install_tools
make_dumps
floors
: >"$RESULTS"
for tool in $TOOLS; do
  log "running $tool over $NIGHTS nights"
  run_tool "$tool"
done
if [[ " $TOOLS " == *" cairn "* ]]; then
  for k in $(seq 2 "$CAIRN_REPOS"); do
    log "running cairn over $NIGHTS nights into repository $k of $CAIRN_REPOS"
    run_tool cairn "cairn#$k"
  done
fi
summarize | tee "$WORK/summary.md"
