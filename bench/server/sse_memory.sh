#!/usr/bin/env bash
# RSS of `herald serve` under many SSE clients catching up on history (see
# docs/benchmarks-server.md, "Memory under catching-up SSE clients").
#
# A database of EVENTS events (~300-byte payloads) is made once; then, for
# each client count and each budget, a fresh `herald serve` gets that many
# clients, all streaming from offset 1 at once, half of them reading as fast
# as they can and half reading nothing (a small receive buffer, so they
# stall), for SECS seconds. Printed: RSS before the clients, peak RSS while
# they stream (VmHWM), the SSE buffer peak from /metrics, and the events
# the reading clients received. The budget "unbounded" (sse_buffer_mb =
# 1048576) shows what the clients would cost without one.
#
# Usage: bench/server/sse_memory.sh [BUILD_DIR]     (default: ./build)
# Env:   EVENTS (100000), CLIENTS ("1000 5000"), BUDGETS ("64 1048576"),
#        SECS (10)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
HERALD=$BUILD/bin/herald
EVENTS=${EVENTS:-100000}
CLIENTS=${CLIENTS:-1000 5000}
BUDGETS=${BUDGETS:-64 1048576}
SECS=${SECS:-10}
for bin in "$HERALD" curl python3; do
  command -v "$bin" >/dev/null || { echo "missing: $bin" >&2; exit 2; }
done
ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d /tmp/herald-ssemem-XXXXXX)
pid=""
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_http() {
  for _ in $(seq 200); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "no answer from $1" >&2
  return 1
}
start_server() {  # budget_mb
  port=$(free_port)
  printf '[server]\nsse_buffer_mb = %s\nmax_connections = 20000\n' "$1" >"$tmp/h.toml"
  "$HERALD" serve --db "sqlite:$tmp/h.db" --config "$tmp/h.toml" \
    --listen "127.0.0.1:$port" 2>>"$tmp/serve.err" &
  pid=$!
  wait_http "http://127.0.0.1:$port/health"
}
stop_server() {
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

# The history.
start_server 64
python3 - "$port" "$EVENTS" <<'EOF'
import http.client, json, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port)
pad = "x" * 300
for start in range(0, n, 1000):
    body = json.dumps([{"stream": f"s{i % 50}", "type": "load.tick",
                        "payload": {"pad": pad}} for i in range(start, min(n, start + 1000))])
    c.request("POST", "/api/events", body, {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 201, r.status
EOF
stop_server

echo "| clients | sse_buffer_mb | RSS before | peak RSS | SSE buffer peak | events received |"
echo "|---|---|---|---|---|---|"
for budget in $BUDGETS; do
  for clients in $CLIENTS; do
    start_server "$budget"
    before=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    received=$(python3 - "$port" "$clients" "$SECS" <<'EOF'
import resource, selectors, socket, sys, time
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sel = selectors.DefaultSelector()
socks = []
req = b"GET /api/events/stream?offset=1 HTTP/1.1\r\nHost: b\r\n\r\n"
for i in range(n):
    s = socket.socket()
    reading = i % 2 == 0
    if not reading:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(req)
    s.setblocking(False)
    socks.append(s)
    if reading:
        sel.register(s, selectors.EVENT_READ)
got = 0
end = time.time() + secs
while time.time() < end:
    for key, _ in sel.select(timeout=0.1):
        try:
            data = key.fileobj.recv(1 << 20)
        except BlockingIOError:
            continue
        if not data:
            sel.unregister(key.fileobj)
            continue
        got += data.count(b"\nid: ") + data.startswith(b"id: ")
print(got)
EOF
)
    peak=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
    buf=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^herald_sse_buffer_peak_bytes / {print $2}')
    label=$budget; [[ $budget == 1048576 ]] && label="unbounded"
    printf '| %s | %s | %d MiB | %d MiB | %.1f MiB | %s |\n' "$clients" "$label" \
      $((before / 1024)) $((peak / 1024)) "$(echo "$buf" | awk '{print $1/1048576}')" "$received"
    stop_server
  done
done
