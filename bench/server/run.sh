#!/usr/bin/env bash
# herald serve benchmarks, each figure beside a baseline measured in the
# same run (see docs/benchmarks-server.md):
#   - GET /api/events 1,000-event pages (wrk) beside nginx serving the same
#     bytes as static files: uncached pages from SQLite, pages in memory,
#     and ETag hits (304)
#   - POST /api/events appends/s: 1 connection single events and batches of
#     100 beside the store's own append rate; 64 connections of single
#     events (group commit) beside the disk's flush rate, and on the grown
#     database beside plain SQLite INSERTs into a copy of it (the ceiling),
#     in alternating rounds, and beside the plainest HTTP group-commit server
#     on the same library (http_group_baseline) under the same wrk
#   - SSE fan-out: 100 subscribers, 1,000 events/s, commit-to-receipt
#   - uncached page reads on SQLite beside Store::Read in-process and
#     beside SQLite's own read of the same rows on every core (and the
#     same pages rendered in-process, without HTTP)
#
# Usage: bench/server/run.sh [BUILD_DIR]     (default: ./build)
# Env:   DUR=seconds per wrk run (5), RUNS=runs per figure, median (3),
#        PARTS=which parts to run ("read write sse", the default: all)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
HERALD=$BUILD/bin/herald
TOOL=$BUILD/bench/server/server_bench_tool
BASELINE=$BUILD/bench/server/http_group_baseline
DUR=${DUR:-5}
RUNS=${RUNS:-3}
PARTS=${PARTS:-read write sse}
part() { [[ " $PARTS " == *" $1 "* ]]; }
for bin in "$HERALD" "$TOOL" "$BASELINE" wrk nginx curl python3; do
  command -v "$bin" >/dev/null || { echo "missing: $bin" >&2; exit 2; }
done

tmp=$(mktemp -d /tmp/herald-bench-XXXXXX)
chmod 755 "$tmp"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
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
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# wrk_rate URL [wrk args...] -> "req/s MB/s"
wrk_once() {
  local out
  out=$(wrk --latency "$@")
  local rps mbs
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  mbs=$(awk '/^Transfer\/sec:/ {v=$2; if (v ~ /GB$/) {sub(/GB/,"",v); v*=1024} else if (v ~ /MB$/) {sub(/MB/,"",v)} else if (v ~ /KB$/) {sub(/KB/,"",v); v/=1024} else {sub(/B$/,"",v); v/=1048576}; print v}' <<<"$out")
  echo "$rps $mbs"
}
# wrk_median ARGS... -> "median_req/s median_MB/s"
wrk_median() {
  local rs=() ms=()
  for _ in $(seq "$RUNS"); do
    read -r r m < <(wrk_once "$@")
    rs+=("$r")
    ms+=("$m")
  done
  echo "$(printf '%s\n' "${rs[@]}" | median) $(printf '%s\n' "${ms[@]}" | median)"
}
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
fmt() { python3 -c "print(f'{$1:,.0f}')"; }

echo "# herald serve benchmarks ($(date -u +%FT%TZ), $(nproc) cores, DUR=${DUR}s, median of $RUNS)"

# ---- read side --------------------------------------------------------------
if part read; then
# 1,000 pages of 1,000 events below the in-memory tail: cycling over them
# misses the 64 MiB page cache every time (LRU, ~210 pages), so each request
# reads SQLite. The first 100 of them, cycled, stay in the page cache.
EVENTS=1020000
"$TOOL" fill "sqlite:$tmp/read.db" $EVENTS
P_READ=$(free_port)
"$HERALD" serve --db "sqlite:$tmp/read.db" --listen "127.0.0.1:$P_READ" \
  2>"$tmp/serve-read.err" &
pids+=($!)
wait_http "http://127.0.0.1:$P_READ/health"

# The same bytes for nginx: every page herald serves, as a static file.
mkdir -p "$tmp/www"
DEEP_PAGES=1000  # positions 1..1,000,000: below the in-memory tail
WARM_PAGES=100   # positions 1..100,000: fit the page cache
HOT_FIRST=1000   # positions 1,000,001..1,020,000: in the in-memory tail
HOT_PAGES=20
# (Exported once in order; then restart the server so no page is cached.)
for k in $(seq 0 $((DEEP_PAGES + HOT_PAGES - 1))); do
  curl -sf "http://127.0.0.1:$P_READ/api/events?offset=$((1 + k * 1000))&limit=1000" \
    -o "$tmp/www/page-$k.json"
done
kill "${pids[-1]}"
wait "${pids[-1]}" || true
"$HERALD" serve --db "sqlite:$tmp/read.db" --listen "127.0.0.1:$P_READ" \
  2>"$tmp/serve-read.err" &
pids+=($!)
wait_http "http://127.0.0.1:$P_READ/health"
chmod -R a+rX "$tmp/www"
PAGE_BYTES=$(stat -c %s "$tmp/www/page-0.json")

P_NGINX=$(free_port)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx.conf" <<EOF
user root;
worker_processes 2;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 100000000;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  types { application/json json; }
  server { listen 127.0.0.1:$P_NGINX; root $tmp/www; etag on; }
}
EOF
nginx -c "$tmp/nginx.conf" -p "$tmp/nginx" &
pids+=($!)
wait_http "http://127.0.0.1:$P_NGINX/page-0.json"

cat >"$tmp/pages.lua" <<'EOF'
-- Rotates over PAGES pages starting at page FIRST (0-based), as herald
-- URLs or as nginx files (MODE=herald|nginx).
local first = tonumber(os.getenv("FIRST"))
local pages = tonumber(os.getenv("PAGES"))
local mode = os.getenv("MODE")
local n = 0
request = function()
  n = n + 1
  local k = first + (n * 7919) % pages
  if mode == "herald" then
    return wrk.format("GET", "/api/events?offset=" .. (1 + k * 1000) .. "&limit=1000")
  end
  return wrk.format("GET", "/page-" .. k .. ".json")
end
EOF

read_pair() {  # label FIRST PAGES
  local label=$1 first=$2 pages=$3
  read -r h_rps h_mbs < <(FIRST=$first PAGES=$pages MODE=herald \
    wrk_median -t2 -c64 -d"${DUR}s" -s "$tmp/pages.lua" "http://127.0.0.1:$P_READ")
  read -r n_rps n_mbs < <(FIRST=$first PAGES=$pages MODE=nginx \
    wrk_median -t2 -c64 -d"${DUR}s" -s "$tmp/pages.lua" "http://127.0.0.1:$P_NGINX")
  echo "| $label | $(fmt "$h_rps*1000") events/s, $(fmt "$h_mbs") MB/s | $(fmt "$n_rps*1000") events/s, $(fmt "$n_mbs") MB/s | $(ratio "$h_rps" "$n_rps") |"
}

echo
echo "## GET /api/events, 1,000-event pages ($PAGE_BYTES bytes), wrk -t2 -c64"
echo
echo "| pages | herald | nginx, same bytes as static files | ratio |"
echo "|---|---|---|---|"
read_pair "uncached, 1,000 pages read from SQLite (page cache missed)" 0 $DEEP_PAGES
read_pair "uncached, 100 pages in the page cache (read from SQLite once)" 0 $WARM_PAGES
read_pair "uncached, 20 pages in the in-memory tail" $HOT_FIRST $HOT_PAGES

ETAG_H=$(curl -sf -D - -o /dev/null "http://127.0.0.1:$P_READ/api/events?offset=1&limit=1000" | awk -F': ' 'tolower($1)=="etag" {print $2}' | tr -d '\r')
ETAG_N=$(curl -sf -D - -o /dev/null "http://127.0.0.1:$P_NGINX/page-0.json" | awk -F': ' 'tolower($1)=="etag" {print $2}' | tr -d '\r')
code_h=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAG_H" "http://127.0.0.1:$P_READ/api/events?offset=1&limit=1000")
code_n=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAG_N" "http://127.0.0.1:$P_NGINX/page-0.json")
read -r h_rps _ < <(wrk_median -t2 -c64 -d"${DUR}s" -H "If-None-Match: $ETAG_H" \
  "http://127.0.0.1:$P_READ/api/events?offset=1&limit=1000")
read -r n_rps _ < <(wrk_median -t2 -c64 -d"${DUR}s" -H "If-None-Match: $ETAG_N" \
  "http://127.0.0.1:$P_NGINX/page-0.json")
echo "| ETag hit (If-None-Match -> $code_h / nginx $code_n) | $(fmt "$h_rps") req/s | $(fmt "$n_rps") req/s | $(ratio "$h_rps" "$n_rps") |"

store_read=$(for _ in $(seq "$RUNS"); do "$TOOL" read-rate "sqlite:$tmp/read.db" "$DUR"; done | median)
# The physical ceiling for pages rendered from SQLite: SQLite stepping the
# same rows on every core, with no JSON, no HTTP and no wrk beside it.
raw_read=$(for _ in $(seq "$RUNS"); do "$TOOL" sqlite-read "$tmp/read.db" "$DUR" "$(nproc)"; done | median)
# What the server does per page without HTTP: Store::Scan rendered to the
# page's JSON, on every core (where the rest of the time goes).
render_read=$(for _ in $(seq "$RUNS"); do "$TOOL" render-rate "sqlite:$tmp/read.db" "$DUR" "$(nproc)"; done | median)
read -r deep_rps _ < <(FIRST=0 PAGES=$DEEP_PAGES MODE=herald \
  wrk_median -t2 -c64 -d"${DUR}s" -s "$tmp/pages.lua" "http://127.0.0.1:$P_READ")
read -r nginx_deep_rps _ < <(FIRST=0 PAGES=$DEEP_PAGES MODE=nginx \
  wrk_median -t2 -c64 -d"${DUR}s" -s "$tmp/pages.lua" "http://127.0.0.1:$P_NGINX")
echo
echo "## Uncached page reads on SQLite"
echo
echo "| herald over HTTP, wrk -c64 (1,000 pages, every one read from SQLite) | baseline in the same run | ratio |"
echo "|---|---|---|"
echo "| $(fmt "$deep_rps*1000") events/s | Store::Read in-process, one thread, same pages: $(fmt "$store_read") events/s | $(ratio "$deep_rps*1000" "$store_read") |"
echo "| $(fmt "$deep_rps*1000") events/s | SQLite alone stepping the same rows on $(nproc) threads (no JSON, no HTTP, no wrk): $(fmt "$raw_read") rows/s | $(ratio "$deep_rps*1000" "$raw_read") |"
echo "| pages rendered in-process on $(nproc) threads (Store::Scan to JSON, no HTTP, no wrk): $(fmt "$render_read") events/s | SQLite alone, as above: $(fmt "$raw_read") rows/s | $(ratio "$render_read" "$raw_read") |"
echo "| SQLite's ceiling beside nginx: $(fmt "$raw_read") rows/s | nginx, same pages: $(fmt "$nginx_deep_rps*1000") events/s | $(ratio "$raw_read" "($nginx_deep_rps*1000)") |"

fi

# ---- write side -------------------------------------------------------------
if part write || part sse; then
P_WRITE=$(free_port)
"$HERALD" serve --db "sqlite:$tmp/write.db" --listen "127.0.0.1:$P_WRITE" \
  2>"$tmp/serve-write.err" &
pids+=($!)
serve_write=$!
wait_http "http://127.0.0.1:$P_WRITE/health"

cat >"$tmp/post.lua" <<'EOF'
-- POSTs one event, or a batch of BATCH events, per request: 1,000
-- requests (1,000 streams) made once, then sent round robin, as wrk's own
-- documentation advises, so that building requests in Lua takes as little
-- as it can of the 2 cores the servers measured here share with wrk.
local batch = tonumber(os.getenv("BATCH") or "1")
local one = '{"stream":"order-%d","type":"order.placed","payload":{"order":%d,"item":"coffee","quantity":2,"price_cents":450},"metadata":{"correlation_id":"bench"}}'
local requests = {}
local n = 0
init = function(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  for k = 1, 1000 do
    local body
    if batch == 1 then
      body = string.format(one, k % 1000, k)
    else
      local parts = {}
      for i = 1, batch do parts[i] = string.format(one, (k + i) % 1000, k * batch + i) end
      body = "[" .. table.concat(parts, ",") .. "]"
    end
    requests[k] = wrk.format(nil, nil, nil, body)
  end
end
request = function()
  n = n % 1000 + 1
  return requests[n]
end
EOF
URL_W="http://127.0.0.1:$P_WRITE/api/events"
fi
if part write; then
metric() { curl -sf "http://127.0.0.1:$P_WRITE/metrics" | awk -v k="$1" '$1==k {print $2}'; }
# group64 -> "median_events/s events_per_commit" over RUNS runs of 64
# connections POSTing single events.
group64() {
  local c0 e0 rate
  c0=$(metric herald_append_commits_total)
  e0=$(metric herald_events_appended_total)
  # One wrk thread drives 64 connections at these rates; a second would
  # only take CPU from the server on this 2-core machine.
  read -r rate _ < <(BATCH=1 wrk_median -t1 -c64 -d"${DUR}s" -s "$tmp/post.lua" "$URL_W")
  echo "$rate $(python3 -c "print(f'{($(metric herald_events_appended_total)-$e0)/($(metric herald_append_commits_total)-$c0):.1f}')")"
}
# First on the empty database, then again once the 1-connection runs have
# stored ~400,000 events (each event then touches its own index page).
read -r fresh64 fresh_epc < <(group64)
read -r single1 _ < <(BATCH=1 wrk_median -t1 -c1 -d"${DUR}s" -s "$tmp/post.lua" "$URL_W")
read -r batch1 _ < <(BATCH=100 wrk_median -t1 -c1 -d"${DUR}s" -s "$tmp/post.lua" "$URL_W")
read -r single64 grown_epc < <(group64)
grown_events=$(metric herald_events_appended_total)
# SQLite's own ceiling for that: plain INSERTs into a page-by-page copy of
# the grown database, as many rows per transaction as herald's commits held.
grown_rows=$(python3 -c "print(round($grown_epc))")
# Alternating rounds, so that the disk's and the machine's drift (the
# flush rate moves by half within minutes here) hits both sides alike: 64
# connections POSTing to herald for DUR seconds, then the plain INSERTs
# for DUR seconds on a page copy of the database as it is then; each
# round's ratio, and their median.
# Each round also runs the plainest HTTP group-commit server on the same
# library (http_group_baseline: no validation, no store, no cache) on a
# page copy, under the same wrk: the ceiling with the HTTP traffic in it.
plain_http() {  # -> "requests/s rows_per_commit"
  local out="$tmp/plain.out" bpid port rate rows commits
  rm -f "$out"
  "$BASELINE" "$tmp/write.db" "$tmp/plain.db" >"$out" 2>"$tmp/plain.err" &
  bpid=$!
  for _ in $(seq 200); do [[ -s $out ]] && break; sleep 0.05; done
  port=$(head -1 "$out")
  read -r rate _ < <(BATCH=1 wrk_once -t1 -c64 -d"${DUR}s" -s "$tmp/post.lua" \
    "http://127.0.0.1:$port/api/events")
  kill -TERM "$bpid"
  wait "$bpid"
  cat "$tmp/plain.err" >&2  # its writer's phases per commit
  read -r rows commits < <(sed -n 2p "$out")
  echo "$rate $(python3 -c "print(f'{$rows/max($commits,1):.1f}')")"
}
# The appender thread's /proc schedstat ("on-CPU-ns run-delay-ns ..."),
# to print its time per commit as the baselines print their writer's.
appender_stat() {
  local t
  for t in /proc/"$serve_write"/task/*; do
    [[ $(cat "$t/comm") == herald-append ]] && cat "$t/schedstat" && return
  done
}
rounds=$(for _ in $(seq "$RUNS"); do
  read -r c0 d0 _ < <(appender_stat)
  n0=$(metric herald_append_commits_total)
  t0=$(date +%s.%N)
  read -r h _ < <(BATCH=1 wrk_once -t1 -c64 -d"${DUR}s" -s "$tmp/post.lua" "$URL_W")
  read -r c1 d1 _ < <(appender_stat)
  n1=$(metric herald_append_commits_total)
  python3 -c "n=max($n1-$n0,1); w=($(date +%s.%N)-$t0)*1e6/n; c=($c1-$c0)/1e3/n; d=($d1-$d0)/1e3/n
print(f'herald per commit (us): {w:.0f} in all; on the CPU {c:.0f}, run delay {d:.0f}, off the CPU {w-c-d:.0f}')" >&2
  read -r r f _ < <("$TOOL" sqlite-group "$tmp/write.db" "$tmp/raw.db" "$grown_rows" "$DUR")
  read -r p pepc < <(plain_http)
  echo "$h $r $f $(python3 -c "print(f'{$h/$r:.2f} {$p} {$pepc} {$h/$p:.2f} {$p/$r:.2f}')")"
done)
paired64=$(awk '{print $1}' <<<"$rounds" | median)
raw_group=$(awk '{print $2}' <<<"$rounds" | median)
raw_frames=$(awk '{print $3}' <<<"$rounds" | median)
paired_ratio=$(awk '{print $4}' <<<"$rounds" | median)
paired_all=$(awk '{printf "%s%s", sep, $4; sep=" / "}' <<<"$rounds")
plain64=$(awk '{print $5}' <<<"$rounds" | median)
plain_epc=$(awk '{print $6}' <<<"$rounds" | median)
plain_ratio=$(awk '{print $7}' <<<"$rounds" | median)
plain_all=$(awk '{printf "%s%s", sep, $7; sep=" / "}' <<<"$rounds")
plain_ceiling=$(awk '{print $8}' <<<"$rounds" | median)
# ... and herald's store alone (no HTTP): one transaction of that many
# single-event Store::Append calls, as the appender makes.
store_group=$(for _ in $(seq "$RUNS"); do
  "$TOOL" store-group "$tmp/write.db" "$tmp/raw.db" "$grown_rows" "$DUR"
done | median)
store1=$(for _ in $(seq "$RUNS"); do "$TOOL" append-rate "sqlite:$tmp/store.db" 1 "$DUR"; done | median)
store100=$(for _ in $(seq "$RUNS"); do "$TOOL" append-rate "sqlite:$tmp/store.db" 100 "$DUR"; done | median)
flush=$(for _ in $(seq "$RUNS"); do "$TOOL" fsync-rate "$tmp" "$DUR"; done | median)

echo
echo "## POST /api/events (SQLite, synchronous=FULL: each answer after its commit is durable)"
echo
echo "| load | herald over HTTP | baseline in the same run | ratio |"
echo "|---|---|---|---|"
echo "| 1 connection, single events | $(fmt "$single1") events/s | Store::Append 1/tx: $(fmt "$store1") events/s | $(ratio "$single1" "$store1") |"
echo "| 1 connection, batches of 100 | $(fmt "$batch1*100") events/s | Store::Append 100/tx: $(fmt "$store100") events/s | $(ratio "$batch1*100" "$store100") |"
echo "| 64 connections, single events (group commit), starting on an empty database | $(fmt "$fresh64") events/s, $fresh_epc events per commit | fdatasync 8 KB: $(fmt "$flush") flushes/s | $(ratio "$fresh64" "$flush") |"
echo "| 64 connections, single events (group commit), database grown to $(fmt "$grown_events") events | $(fmt "$single64") events/s, $grown_epc events per commit | fdatasync 8 KB: $(fmt "$flush") flushes/s | $(ratio "$single64" "$flush") |"
echo "| the same, in $RUNS rounds alternating with SQLite's ceiling on that database | $(fmt "$paired64") events/s | plain INSERTs, $grown_rows rows per transaction, into a page copy of it: $(fmt "$raw_group") rows/s ($raw_frames WAL frames per commit, $(ratio "$raw_group" "$flush")x the flush rate) | $paired_ratio (rounds: $paired_all) |"
echo "| the same, beside the plainest HTTP group-commit server (http_group_baseline: Beast, the same I/O threads, plain INSERTs, no validation, no cache), same wrk, page copy of the database | $(fmt "$paired64") events/s | $(fmt "$plain64") requests/s, $plain_epc rows per commit, $plain_ceiling of the plain INSERTs | $plain_ratio (rounds: $plain_all) |"
echo "| the same, beside herald's store alone on that database | $(fmt "$single64") events/s | $grown_rows single-event Store::Append calls per transaction, into a page copy of it: $(fmt "$store_group") events/s ($(ratio "$store_group" "$raw_group") of plain INSERTs) | $(ratio "$single64" "$store_group") |"
fi

# ---- SSE fan-out ------------------------------------------------------------
if part sse; then
echo
echo "## SSE fan-out: 100 subscribers, 1,000 events/s, commit-to-receipt (ms)"
echo
echo "| run | rate, deliveries | from occurred_at p50 | p99 | max | after the POST answer p50 | p99 |"
echo "|---|---|---|---|---|---|---|"
for i in $(seq "$RUNS"); do
  echo "| $i | $("$TOOL" sse-fanout "$P_WRITE" 100 1000 "$DUR")"
done
echo
echo "The commit lies between the event's occurred_at (set by the store just"
echo "before the insert, so this bound includes the commit's fsync) and the"
echo "writer's answer: commit-to-receipt lies between the two columns."
fi
