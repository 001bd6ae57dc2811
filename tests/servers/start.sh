#!/usr/bin/env bash
# usage: tests/servers/start.sh STATE_DIR
#
# Starts the real storage servers the gated tests (tests/remote_servers.rs) run against, all on 127.0.0.1:
#   - Debian's OpenSSH sshd, unprivileged (user nobody), key auth only       -> SFTP
#   - Debian's nginx with the WebDAV modules, basic auth cairn:cairn          -> WebDAV
#   - moto_server from PyPI moto[server], bucket "cairn", any credentials     -> S3
#   - the machine's PostgreSQL (Debian's postgresql package), trust auth      -> dump commands (tests/postgres.rs)
# Server programs are unpacked from Debian packages into STATE_DIR (no system service is installed or
# started) and moto goes into a venv there, so a second run reuses them. Writes STATE_DIR/env, to be
# sourced before `cargo test`; stop everything with tests/servers/stop.sh STATE_DIR.
set -euo pipefail
S=$(mkdir -p "$1" && cd "$1" && pwd)
# sshd and nginx run as nobody: every directory above their data must be traversable.
chmod 755 "$S"
ROOT=$S/debroot
ARCH_LIB=$ROOT/usr/lib/$(uname -m)-linux-gnu

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_tcp() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; echo "port $1 never opened" >&2; return 1; }

unpack() { # unpack Debian packages (first that downloads of each alternative list) into $ROOT
  mkdir -p "$S/debs"
  for alternatives in "$@"; do
    local ok=
    for p in ${alternatives//|/ }; do
      if (cd "$S/debs" && apt-get download -q "$p" >/dev/null 2>&1); then ok=1; break; fi
    done
    [ -n "$ok" ] || { echo "cannot download any of: $alternatives (run apt-get update?)" >&2; exit 1; }
  done
  for d in "$S"/debs/*.deb; do dpkg -x "$d" "$ROOT"; done
}

start_sshd() {
  local D=$S/sshd PORT
  PORT=$(free_port)
  [ -x "$ROOT/usr/sbin/sshd" ] || unpack openssh-server openssh-sftp-server libwrap0
  mkdir -p "$D/data"
  [ -f "$D/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$D/host_key"
  [ -f "$D/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$D/client_key"
  cp "$D/client_key.pub" "$D/authorized_keys"
  cat > "$D/sshd_config" <<CFG
ListenAddress 127.0.0.1:$PORT
HostKey $D/host_key
PidFile none
UsePAM yes
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile $D/authorized_keys
Subsystem sftp internal-sftp
CFG
  chown -R nobody:nogroup "$D/data" "$D/host_key" "$D/authorized_keys" "$D/sshd_config"
  chmod 755 "$D"
  LD_LIBRARY_PATH=$ARCH_LIB setsid setpriv --reuid=65534 --regid=65534 --clear-groups \
    "$ROOT/usr/sbin/sshd" -D -e -f "$D/sshd_config" > "$D/log" 2>&1 < /dev/null &
  echo $! > "$D/pid"
  wait_tcp "$PORT"
  {
    echo "export CAIRN_TEST_SFTP_URL=sftp://nobody@127.0.0.1:$PORT$D/data"
    echo "export CAIRN_TEST_SFTP_KEY=$D/client_key"
    echo "export CAIRN_TEST_SFTP_DATA=$D/data"
  } >> "$S/env"
}

start_webdav() {
  local D=$S/webdav PORT
  PORT=$(free_port)
  [ -x "$ROOT/usr/sbin/nginx" ] || unpack "nginx|nginx-core" libnginx-mod-http-dav-ext
  mkdir -p "$D/data" "$D/tmp" "$D/logs"
  chown -R nobody:nogroup "$D/data" "$D/tmp"
  printf 'cairn:%s\n' "$(openssl passwd -apr1 cairn)" > "$D/htpasswd"
  cat > "$D/nginx.conf" <<CFG
load_module $ROOT/usr/lib/nginx/modules/ngx_http_dav_ext_module.so;
user nobody nogroup; worker_processes 2; pid $D/pid; error_log $D/logs/error.log;
events { worker_connections 256; }
http { access_log $D/logs/access.log; client_body_temp_path $D/tmp;
  proxy_temp_path $D/tmp; fastcgi_temp_path $D/tmp; uwsgi_temp_path $D/tmp; scgi_temp_path $D/tmp;
  server { listen 127.0.0.1:$PORT; root $D/data; client_max_body_size 0;
    location / { auth_basic "dav"; auth_basic_user_file $D/htpasswd;
      dav_methods PUT DELETE MKCOL COPY MOVE; dav_ext_methods PROPFIND OPTIONS;
      create_full_put_path on; dav_access user:rw group:rw all:r; } } }
CFG
  "$ROOT/usr/sbin/nginx" -p "$D" -c "$D/nginx.conf"
  wait_tcp "$PORT"
  {
    echo "export CAIRN_TEST_WEBDAV_URL=webdav://cairn@127.0.0.1:$PORT/"
    echo "export CAIRN_TEST_WEBDAV_PASSWORD=cairn"
    echo "export CAIRN_TEST_WEBDAV_DATA=$D/data"
  } >> "$S/env"
}

start_moto() {
  local D=$S/moto PORT
  PORT=$(free_port)
  mkdir -p "$D"
  [ -x "$D/venv/bin/moto_server" ] || { python3 -m venv "$D/venv" && "$D/venv/bin/pip" install -q 'moto[server]'; }
  setsid "$D/venv/bin/moto_server" -H 127.0.0.1 -p "$PORT" > "$D/log" 2>&1 < /dev/null &
  echo $! > "$D/pid"
  wait_tcp "$PORT"
  curl -sf -X PUT "http://127.0.0.1:$PORT/cairn" > /dev/null
  echo "export CAIRN_TEST_MOTO_ENDPOINT=http://127.0.0.1:$PORT" >> "$S/env"
}

start_postgres() {
  local D=$S/postgres PORT BIN RUN_AS
  # Debian installs server programs per major version; take the newest.
  BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -x "$BIN/initdb" ] || { echo "PostgreSQL is not installed: apt-get install postgresql" >&2; exit 1; }
  PORT=$(free_port)
  # postgres refuses to run as root: run it as the package's user (or nobody), owning its files.
  RUN_AS=postgres; id -u "$RUN_AS" >/dev/null 2>&1 || RUN_AS=nobody
  mkdir -p "$D"
  chown "$RUN_AS" "$D"
  chmod 755 "$D"
  as_pg() { setpriv --reuid="$(id -u "$RUN_AS")" --regid="$(id -g "$RUN_AS")" --clear-groups "$@"; }
  if [ ! -f "$D/data/PG_VERSION" ]; then
    rm -rf "$D/data"
    as_pg "$BIN/initdb" -D "$D/data" -U cairn -A trust -E UTF8 --locale=C.UTF-8 --no-sync > "$D/initdb.log" 2>&1 \
      || { cat "$D/initdb.log" >&2; exit 1; }
  fi
  # Loopback only, socket inside STATE_DIR (not /run/postgresql), durability off: test data.
  setsid setpriv --reuid="$(id -u "$RUN_AS")" --regid="$(id -g "$RUN_AS")" --clear-groups \
    "$BIN/postgres" -D "$D/data" -p "$PORT" -k "$D" -c listen_addresses=127.0.0.1 \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off > "$D/log" 2>&1 < /dev/null &
  echo $! > "$D/pid"
  wait_tcp "$PORT"
  for _ in $(seq 100); do "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" && break; sleep 0.2; done
  "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" || { echo "PostgreSQL did not start:" >&2; cat "$D/log" >&2; exit 1; }
  # cairn-specific names: PGHOST and friends would leak into every other test's environment.
  {
    echo "export CAIRN_TEST_PG_HOST=127.0.0.1"
    echo "export CAIRN_TEST_PG_PORT=$PORT"
    echo "export CAIRN_TEST_PG_USER=cairn"
    echo "export CAIRN_TEST_PG_BIN=$BIN"
  } >> "$S/env"
}

: > "$S/env"
start_sshd
start_webdav
start_moto
start_postgres
echo "export CAIRN_TEST_SERVERS=1" >> "$S/env"
cat "$S/env"
