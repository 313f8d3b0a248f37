#!/usr/bin/env bash
# Memory of `flowbridge run` alone, per active instance.
#
# `flowbridge bench` runs the broker and the simulators in its own process,
# so its RSS figures include the simulator's record of every accepted todo.
# This script runs each part as its own process — tansu as the broker, the
# POA simulator (`flowbridge simulate poa`) and `flowbridge run` — and
# reports the settled RSS growth of `flowbridge run` only, for two instance
# counts at the same number of events: what grows with the instances is
# the per-instance memory; the rest is bounded buffers.
#
#   cargo build --release && benches/memory.sh [EVENTS] [INSTANCES_A] [INSTANCES_B]
#
# Needs `tansu` 0.6 on PATH (`.ci/run` shows how to install it) and curl.
# Bounded buffers are set small so they do not hide a per-instance cost:
# the redb page cache (state.cache_mb, CACHE_MB) and librdkafka's fetch
# queue (queued.max.messages.kbytes, QUEUE_KB).
set -euo pipefail
cd "$(dirname "$0")/.."
FB=${FB:-target/release/flowbridge}
EVENTS=${1:-100000}
A=${2:-10000}
B=${3:-40000}
CACHE_MB=${CACHE_MB:-4}
QUEUE_KB=${QUEUE_KB:-4096}
SETTLE=${SETTLE:-5}
command -v tansu >/dev/null || { echo "tansu is not on PATH"; exit 1; }
[ -x "$FB" ] || { echo "$FB missing: cargo build --release"; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

mkdir "$work/workflows"
cp workflows/leave-approval.yaml workflows/thesis-review.yaml "$work/workflows/"
kport=$(free_port); sport=$(free_port); mport=$(free_port)
tansu broker --listener-url "tcp://127.0.0.1:$kport" --advertised-listener-url "tcp://127.0.0.1:$kport" \
  --storage-engine memory://tansu/ > "$work/tansu.log" 2>&1 &
pids+=($!)
FLOWBRIDGE_SIM_CLIENT_SECRET=bench "$FB" simulate poa --listen "127.0.0.1:$sport" > "$work/sim.log" 2>&1 &
pids+=($!)
sleep 1

rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }

measure() {
  local instances=$1
  # The bench's generated stream, produced to a fresh topic (its bare run
  # only reads it back). One record per batch: see docs/architecture.md.
  FLOWBRIDGE_TEST_BOOTSTRAP="127.0.0.1:$kport" FLOWBRIDGE_TEST_ONE_RECORD_PER_BATCH=1 \
    "$FB" bench --runs bare --events "$EVENTS" --instances "$instances" --partitions 4 \
    > /dev/null 2> "$work/produce.log"
  local topic events made
  topic=$(grep -o 'produced to [^ ]*' "$work/produce.log" | awk '{print $3}')
  events=$(grep -o '[0-9]* events over' "$work/produce.log" | head -1 | awk '{print $1}')
  made=$(grep -o 'over [0-9]* instances' "$work/produce.log" | head -1 | awk '{print $2}')
  cat > "$work/fb.yaml" <<YAML
kafka:
  brokers: 127.0.0.1:$kport
  group_id: memory-$instances
  topics: [$topic]
  properties: { auto.offset.reset: earliest, queued.max.messages.kbytes: "$QUEUE_KB" }
workflows: $work/workflows
state: { kind: redb, path: $work/state-$instances.redb, cache_mb: $CACHE_MB }
poa:
  base_url: http://127.0.0.1:$sport
  auth: { oauth: { client_id: flowbridge, client_secret: bench } }
metrics_addr: 127.0.0.1:$mport
YAML
  # jemalloc purges freed pages from a background thread within a second,
  # so the settled RSS is what is in use, not what the run freed.
  _RJEM_MALLOC_CONF=background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0 \
    "$FB" run --config "$work/fb.yaml" > "$work/run.log" 2>&1 &
  local run=$!
  pids+=("$run")
  for _ in $(seq 1 200); do curl -sf "127.0.0.1:$mport/readyz" > /dev/null && break; sleep 0.1; done
  local r0 applied
  r0=$(rss_kib "$run")
  while :; do
    applied=$(curl -s "127.0.0.1:$mport/metrics" | awk '/^flowbridge_events_applied_total/{s+=$2} END{printf "%d", s}')
    [ "$applied" -ge "$events" ] && break
    kill -0 "$run" 2>/dev/null || { cat "$work/run.log"; echo "flowbridge run exited"; exit 1; }
    sleep 0.5
  done
  sleep "$SETTLE"
  local r1
  r1=$(rss_kib "$run")
  kill -TERM "$run"; wait "$run" || true
  echo "$made $events $r0 $r1"
}

read -r ia ea a0 a1 < <(measure "$A")
read -r ib eb b0 b1 < <(measure "$B")
printf '%-10s %-8s %-14s %-14s %s\n' instances events "RSS ready KiB" "RSS done KiB" "growth KiB"
printf '%-10s %-8s %-14s %-14s %s\n' "$ia" "$ea" "$a0" "$a1" "$((a1 - a0))"
printf '%-10s %-8s %-14s %-14s %s\n' "$ib" "$eb" "$b0" "$b1" "$((b1 - b0))"
python3 - "$ia" "$a0" "$a1" "$ib" "$b0" "$b1" <<'PY'
import sys
ia, a0, a1, ib, b0, b1 = map(int, sys.argv[1:])
per = ((b1 - b0) - (a1 - a0)) * 1024 / (ib - ia)
print(f"marginal memory per active instance: {per:.0f} bytes "
      f"(settled RSS growth difference / instance difference)")
PY
