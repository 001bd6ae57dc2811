#!/usr/bin/env bash
# usage: tests/servers/stop.sh STATE_DIR -- stops the servers tests/servers/start.sh started there.
set -uo pipefail
S=$1
for f in "$S/sshd/pid" "$S/moto/pid" "$S/webdav/pid"; do
  [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
  rm -f "$f"
done
exit 0
