#!/usr/bin/env bash
# A database file edited in place: a SQLite database of 500,000 rows is backed up, 1,000 rows are
# updated at random places, and it is backed up again. Prints what each backup added, restores
# the second and compares it byte for byte.
#
# Usage: benches/sqlite_edit.sh [CAIRN_BINARY]   (default: a release build of this checkout)
# Work directory: $CAIRN_BENCH_DIR (default /var/tmp/cairn-sqlite-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${CAIRN_BENCH_DIR:-/var/tmp/cairn-sqlite-bench}
if [ $# -gt 0 ]; then CAIRN=$1; else cargo build --release --quiet; CAIRN=$PWD/target/release/cairn; fi
export CAIRN_PASSWORD=bench
rm -rf "$WORK"
mkdir -p "$WORK/src"
python3 - "$WORK/src/app.db" <<'PY'
import hashlib, random, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("create table orders (id integer primary key, customer int, amount real, status text, note text)")
rnd = random.Random(1)
db.executemany("insert into orders values (?,?,?,?,?)",
               ((i, rnd.randrange(10**6), rnd.random() * 1000, "new", hashlib.md5(str(i).encode()).hexdigest() * 2)
                for i in range(1, 500001)))
db.commit()
PY
added() { python3 -c 'import json,sys; s=json.load(sys.stdin)["summary"]; print(s["bytes_added"], "bytes in", s["blobs_added"], "blobs,", s.get("deltas_added", 0), "as deltas")'; }
"$CAIRN" -q -r "$WORK/repo" init
echo "database: $(stat -c %s "$WORK/src/app.db") bytes"
echo "first backup: $("$CAIRN" -r "$WORK/repo" --json backup "$WORK/src" | added)"
python3 - "$WORK/src/app.db" <<'PY'
import random, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rnd = random.Random(2)
for _ in range(1000):
    db.execute("update orders set status='paid', amount=amount+1 where id=?", (rnd.randrange(1, 500001),))
db.commit()
PY
echo "after 1,000 updates: $("$CAIRN" -r "$WORK/repo" --json backup "$WORK/src" | added)"
"$CAIRN" -q -r "$WORK/repo" restore latest --target "$WORK/out"
cmp "$WORK/out$WORK/src/app.db" "$WORK/src/app.db" && echo "restored byte for byte"
