#!/usr/bin/env bash
# Runs a command beside a private PostgreSQL cluster, then stops the cluster.
#
# Usage: tests/support/with-postgres.sh COMMAND [ARGS...]
#
# initdb's a cluster into a temporary directory (fsync on), starts it on a
# free 127.0.0.1 port with its socket in that directory, creates a database
# and runs COMMAND with:
#   HERALD_TEST_PG_URL           postgresql://USER@127.0.0.1:PORT/herald_test
#   HERALD_TEST_PG_PASSWORD_URL  the same database as a password-checked role
#                                (herald_pw / herald-pw-secret, scram-sha-256)
#   HERALD_TEST_PG_CTL           a script running pg_ctl on this cluster as the
#                                right OS user: "$HERALD_TEST_PG_CTL stop -m fast"
#   HERALD_TEST_PG_DATA          the data directory
# The cluster is stopped and removed when COMMAND ends, also on failure or
# interrupt; the script exits with COMMAND's status. PostgreSQL refuses to run
# as root, so under root the server runs as the `postgres` OS user.
# PG_BIN overrides the binaries' folder (default /usr/lib/postgresql/15/bin).
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
if [[ ! -x $PG_BIN/initdb ]]; then
  PG_BIN=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
fi
if [[ ! -x $PG_BIN/initdb ]]; then
  echo "with-postgres: initdb not found (set PG_BIN)" >&2
  exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/herald-pg-XXXXXX")
as_pg=()
db_user=$(id -un)
if [[ $(id -u) -eq 0 ]]; then
  db_user=postgres
  chown postgres: "$tmp"
  chmod 700 "$tmp"
  if command -v runuser >/dev/null; then
    as_pg=(runuser -u postgres --)
  else
    as_pg=(su postgres -s /bin/sh -c '"$0" "$@"')
  fi
fi
data=$tmp/data

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cleanup() {
  local rc=$?
  if [[ -f $data/postmaster.pid ]]; then
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"${as_pg[@]}" "$PG_BIN/initdb" -D "$data" -U "$db_user" -A trust -E UTF8 \
  --locale=C.UTF-8 >"$tmp/initdb.log" 2>&1 || {
  cat "$tmp/initdb.log" >&2
  exit 1
}
cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$tmp'
fsync = on
synchronous_commit = on
max_connections = 300
max_prepared_transactions = 0
log_min_messages = warning
logging_collector = off
CONF
cat >"$data/pg_hba.conf" <<HBA
local all all                trust
host  all herald_pw 127.0.0.1/32 scram-sha-256
host  all all       127.0.0.1/32 trust
HBA

cat >"$tmp/pg_ctl.sh" <<CTL
#!/usr/bin/env bash
# pg_ctl on the herald test cluster: pg_ctl.sh stop -m fast | start | restart
cmd=\$1; shift
if [[ \$cmd == start ]]; then
  exec ${as_pg[*]@Q} "$PG_BIN/pg_ctl" -D "$data" -l "$tmp/server.log" -w "\$cmd" "\$@"
fi
exec ${as_pg[*]@Q} "$PG_BIN/pg_ctl" -D "$data" -w "\$cmd" "\$@"
CTL
chmod 755 "$tmp/pg_ctl.sh"

"$tmp/pg_ctl.sh" start >/dev/null || {
  cat "$tmp/server.log" >&2
  exit 1
}

"$PG_BIN/psql" -qAt -h 127.0.0.1 -p "$port" -U "$db_user" -d postgres \
  -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE DATABASE herald_test;
CREATE ROLE herald_pw LOGIN SUPERUSER PASSWORD 'herald-pw-secret';
SQL

export HERALD_TEST_PG_URL="postgresql://$db_user@127.0.0.1:$port/herald_test"
export HERALD_TEST_PG_PASSWORD_URL="postgresql://herald_pw:herald-pw-secret@127.0.0.1:$port/herald_test"
export HERALD_TEST_PG_CTL="$tmp/pg_ctl.sh"
export HERALD_TEST_PG_DATA="$data"

set +e
"$@"
status=$?
set -e
exit "$status"
