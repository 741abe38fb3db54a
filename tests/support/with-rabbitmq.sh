#!/usr/bin/env bash
# Runs a command beside a private RabbitMQ server, then stops the server.
#
# Usage: tests/support/with-rabbitmq.sh COMMAND [ARGS...]
#
# Starts /usr/lib/rabbitmq/bin/rabbitmq-server directly (not the Debian
# wrapper, which switches to the rabbitmq user and /var/lib/rabbitmq) with a
# private HOME (mode-400 .erlang.cookie), its own epmd on a free port
# (ERL_EPMD_PORT, so no epmd daemon outlives the run), its data and logs in a
# temporary directory, listening on 127.0.0.1 only. Ready when the AMQP port
# accepts. Runs COMMAND with:
#   HERALD_TEST_AMQP_URL       amqp://guest:guest@127.0.0.1:PORT/
#   HERALD_TEST_RABBITMQ_CTL   rabbitmqctl for this server:
#                              "$HERALD_TEST_RABBITMQ_CTL close_all_connections x"
#   HERALD_TEST_RABBITMQ_SERVER  "stop" | "start" this server (start waits
#                              until the AMQP port accepts)
# Everything (server, epmd) is stopped and removed when COMMAND ends, also on
# failure or interrupt; the script exits with COMMAND's status.
# RABBITMQ_BIN overrides the binaries' folder (default /usr/lib/rabbitmq/bin).
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi

RABBITMQ_BIN=${RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}
if [[ ! -x $RABBITMQ_BIN/rabbitmq-server ]]; then
  echo "with-rabbitmq: $RABBITMQ_BIN/rabbitmq-server not found (set RABBITMQ_BIN)" >&2
  exit 2
fi
EPMD=$(command -v epmd || true)
if [[ -z $EPMD ]]; then
  EPMD=$(ls /usr/lib/erlang/erts-*/bin/epmd 2>/dev/null | head -1)
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/herald-rabbitmq-XXXXXX")
amqp_port=$(free_port)
dist_port=$(free_port)
epmd_port=$(free_port)
node="herald$amqp_port@localhost"

mkdir -p "$tmp/home" "$tmp/mnesia" "$tmp/log"
head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/home/.erlang.cookie"
chmod 400 "$tmp/home/.erlang.cookie"
: >"$tmp/enabled_plugins"

cat >"$tmp/env.sh" <<ENV
export HOME='$tmp/home'
export ERL_EPMD_PORT=$epmd_port
export RABBITMQ_NODENAME='$node'
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$amqp_port
export RABBITMQ_DIST_PORT=$dist_port
export RABBITMQ_MNESIA_BASE='$tmp/mnesia'
export RABBITMQ_LOG_BASE='$tmp/log'
export RABBITMQ_PID_FILE='$tmp/rabbitmq.pid'
export RABBITMQ_ENABLED_PLUGINS_FILE='$tmp/enabled_plugins'
export RABBITMQ_CONFIG_FILE='$tmp/rabbitmq'
export RABBITMQ_ADVANCED_CONFIG_FILE='$tmp/advanced.config'
export RABBITMQ_CONF_ENV_FILE='$tmp/rabbitmq-env.conf'
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'
ENV
: >"$tmp/rabbitmq-env.conf"
cat >"$tmp/rabbitmq.conf" <<CONF
loopback_users = none
listeners.tcp.default = 127.0.0.1:$amqp_port
CONF

cat >"$tmp/ctl.sh" <<CTL
#!/usr/bin/env bash
# rabbitmqctl on the herald test server: ctl.sh close_all_connections why
. '$tmp/env.sh'
exec '$RABBITMQ_BIN/rabbitmqctl' -n '$node' -q "\$@"
CTL
cat >"$tmp/server.sh" <<SRV
#!/usr/bin/env bash
# The herald test server: server.sh start | stop
set -euo pipefail
. '$tmp/env.sh'
case "\${1:-}" in
  start)
    setsid '$RABBITMQ_BIN/rabbitmq-server' >>'$tmp/server.out' 2>&1 </dev/null &
    echo \$! >'$tmp/server.wrapper.pid'
    for _ in \$(seq 1 600); do
      if python3 -c 'import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(("127.0.0.1",$amqp_port)))' 2>/dev/null; then
        exit 0
      fi
      if ! kill -0 "\$(cat '$tmp/server.wrapper.pid')" 2>/dev/null; then
        echo "rabbitmq-server exited:" >&2
        tail -30 '$tmp/server.out' >&2
        exit 1
      fi
      sleep 0.1
    done
    echo "rabbitmq-server did not listen on $amqp_port in 60 s" >&2
    exit 1
    ;;
  stop)
    '$tmp/ctl.sh' stop >/dev/null 2>&1 || true
    if [[ -f '$tmp/server.wrapper.pid' ]]; then
      pid=\$(cat '$tmp/server.wrapper.pid')
      for _ in \$(seq 1 300); do
        kill -0 "\$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL -- -"\$pid" 2>/dev/null || true
      rm -f '$tmp/server.wrapper.pid'
    fi
    ;;
  *)
    echo "usage: server.sh start|stop" >&2
    exit 2
    ;;
esac
SRV
chmod 755 "$tmp/ctl.sh" "$tmp/server.sh"

epmd_pid=
cleanup() {
  local rc=$?
  "$tmp/server.sh" stop >/dev/null 2>&1 || true
  if [[ -n $epmd_pid ]]; then
    kill "$epmd_pid" 2>/dev/null || true
    wait "$epmd_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$EPMD" -port "$epmd_port" -address 127.0.0.1 >"$tmp/epmd.log" 2>&1 &
epmd_pid=$!

"$tmp/server.sh" start || exit 1

export HERALD_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:$amqp_port/"
export HERALD_TEST_RABBITMQ_CTL="$tmp/ctl.sh"
export HERALD_TEST_RABBITMQ_SERVER="$tmp/server.sh"

set +e
"$@"
status=$?
set -e
exit "$status"
