#!/usr/bin/env bash
# Flamegraphs of one Cairn node's hot paths under rdkafka_performance (issue 10, item 4).
# Not a test. Needs `perf` (Debian: linux-perf) and inferno (`cargo install inferno`).
#
#   RDKAFKA_PERF=/path/to/rdkafka_performance OUT=docs/flamegraphs bash bench/flamegraph.sh
#
# Environment: RDKAFKA_PERF (required), CAIRN (default target/release/cairn, built if
# missing), PYTHON (with confluent-kafka, default /opt/cairn-venv/bin/python), INFERNO (the
# directory holding inferno-collapse-perf and inferno-flamegraph; default: on PATH), OUT
# (default flamegraphs/), COUNT (records per workload, default 4000000), SIZE (record bytes,
# default 100), FREQ (samples per second, default 1999).
#
# Three workloads on a fresh `cairn dev` node (durability fsync), each profiled on its own
# with `perf record --call-graph dwarf` attached to the node only (the client is not in the
# profile): produce acks=1, produce acks=all, and a consumer reading the acks=1 topic from
# the beginning. Writes OUT/NAME.svg and OUT/NAME.folded (the collapsed stacks, for
# `inferno-diff-folded` against a later build).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

RDK="${RDKAFKA_PERF:?set RDKAFKA_PERF to the rdkafka_performance binary}"
CAIRN="${CAIRN:-target/release/cairn}"
PYTHON="${PYTHON:-/opt/cairn-venv/bin/python}"
OUT="${OUT:-flamegraphs}"
COUNT="${COUNT:-4000000}"
SIZE="${SIZE:-100}"
FREQ="${FREQ:-1999}"
COLLAPSE="${INFERNO:+$INFERNO/}inferno-collapse-perf"
FLAMEGRAPH="${INFERNO:+$INFERNO/}inferno-flamegraph"
PORT="$(free_port)"
WORK="$(mktemp -d /tmp/cairn-flame.XXXXXX)"
NODE_PID=""

for tool in perf "$COLLAPSE" "$FLAMEGRAPH"; do
  if ! command -v "$tool" >/dev/null; then
    echo "$tool not found: apt-get install -y linux-perf; cargo install inferno (set INFERNO to its bin directory)" >&2
    exit 1
  fi
done
if [ ! -x "$CAIRN" ]; then
  cargo build --release -p cairn-node --bin cairn
fi
mkdir -p "$OUT"
trap 'stop_node; rm -rf "$WORK"' EXIT

"$CAIRN" dev --data-dir "$WORK/data" --listener "127.0.0.1:$PORT" \
  --http-listener "127.0.0.1:$(free_port)" >"$WORK/node.log" 2>&1 &
NODE_PID=$!
wait_for_port "$PORT"
"$PYTHON" - "127.0.0.1:$PORT" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for future in admin.create_topics([NewTopic(t, 1, 1) for t in ("acks1", "acksall")]).values():
    future.result(timeout=30)
PY

# profile NAME COMMAND...: perf attached to the node while COMMAND runs, then the SVG.
profile() {
  local name=$1
  shift
  perf record -q -F "$FREQ" --call-graph dwarf,16384 -p "$NODE_PID" -o "$WORK/$name.data" &
  local perf_pid=$!
  sleep 0.5
  "$@" >"$WORK/$name.txt" 2>&1
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
  echo "$name: $(rate_of "$WORK/$name.txt") records/s while profiled"
  perf script -i "$WORK/$name.data" 2>/dev/null | "$COLLAPSE" >"$OUT/$name.folded"
  "$FLAMEGRAPH" --title "cairn node: $name ($SIZE-byte records, rdkafka_performance)" \
    "$OUT/$name.folded" >"$OUT/$name.svg"
}

profile produce-acks1 "$RDK" -P -t acks1 -p 0 -b "127.0.0.1:$PORT" -s "$SIZE" -c "$COUNT" \
  -a 1 -X linger.ms=5 -u
profile produce-acksall "$RDK" -P -t acksall -p 0 -b "127.0.0.1:$PORT" -s "$SIZE" \
  -c "$COUNT" -a -1 -X linger.ms=5 -u
profile consume "$RDK" -C -t acks1 -p 0 -b "127.0.0.1:$PORT" -o beginning -c "$COUNT" -u
echo "flamegraphs in $OUT"
