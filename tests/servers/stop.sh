#!/usr/bin/env bash
# usage: tests/servers/stop.sh STATE_DIR -- stops the servers tests/servers/start.sh started there.
set -uo pipefail
S=$1
for f in "$S/sshd/pid" "$S/moto/pid" "$S/webdav/pid"; do
  [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
  rm -f "$f"
done
# SIGINT is PostgreSQL's fast shutdown: it ends client sessions instead of waiting for them.
f=$S/postgres/pid
if [ -f "$f" ]; then
  kill -INT "$(cat "$f")" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
  rm -f "$f"
fi
exit 0
