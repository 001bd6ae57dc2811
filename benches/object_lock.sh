#!/usr/bin/env bash
# Object Lock on an offsite copy: the cost of the first locked sync and of a nightly one, in
# requests and time. A local repository of a system tree (1 MiB packs, so there are many objects)
# is synced to a new bucket with Object Lock; then a second backup adds a little, and the same
# sync runs again, extending the locks by the keep policy. Printed: each sync's lock report
# (objects checked, vouched for by the local ledger, extended, requests) and its wall time and
# peak memory.
#
# Usage: benches/object_lock.sh [CAIRN_BINARY]   (default: a release build of this checkout)
#   ENDPOINT=http://127.0.0.1:PORT (an S3 service with Object Lock, e.g. tests/servers/start.sh's
#   moto: `source STATE/env; ENDPOINT=$CAIRN_TEST_MOTO_ENDPOINT`); TREES="/usr/share/doc
#   /usr/share/locale /usr/share/man". Credentials come from AWS_ACCESS_KEY_ID and
#   AWS_SECRET_ACCESS_KEY (moto takes any: "test").
# Work directory: $CAIRN_BENCH_DIR (default /var/tmp/cairn-lock-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${CAIRN_BENCH_DIR:-/var/tmp/cairn-lock-bench}
TREES=${TREES:-/usr/share/doc /usr/share/locale /usr/share/man}
: "${ENDPOINT:?set ENDPOINT to an S3 endpoint with Object Lock (see the usage above)}"
if [ $# -gt 0 ]; then CAIRN=$1; else cargo build --release --quiet; CAIRN=$PWD/target/release/cairn; fi
export CAIRN_PASSWORD=bench AWS_ENDPOINT_URL=$ENDPOINT AWS_REGION=${AWS_REGION:-us-east-1}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
BUCKET=lock-bench-$$
rm -rf "$WORK"
mkdir -p "$WORK/extra"
# A new bucket with Object Lock (which enables versioning); moto takes unsigned requests.
curl -sf -X PUT "$ENDPOINT/$BUCKET" -H "x-amz-bucket-object-lock-enabled: true" >/dev/null
local_repo=("$CAIRN" -r "$WORK/repo" --cache-dir "$WORK/cache")
"${local_repo[@]}" -q init --pack-size 1
# shellcheck disable=SC2086
"${local_repo[@]}" -q backup $TREES
keep=(--keep-daily 7 --keep-monthly 12)
timed() {
  local what=$1
  shift
  /usr/bin/time -f "$what: %e s, peak %M KiB" "$@" 2>&1 | grep -E "^(complete|locks|$what)"
}
timed "first locked sync" "${local_repo[@]}" sync --to "s3://$BUCKET/copy" \
  --lock-mode governance --lock-period 14d "${keep[@]}"
head -c 100000 /dev/urandom >"$WORK/extra/new.bin"
# shellcheck disable=SC2086
"${local_repo[@]}" -q backup $TREES "$WORK/extra"
timed "nightly sync" "${local_repo[@]}" sync --to "s3://$BUCKET/copy" "${keep[@]}"
timed "retention show" "$CAIRN" -r "s3://$BUCKET/copy" --cache-dir "$WORK/cache" \
  retention show "${keep[@]}"
