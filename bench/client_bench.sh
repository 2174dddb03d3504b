#!/usr/bin/env bash
# The Rust client's producer against librdkafka's, on the same `cairn dev` node in the same
# run (issue 8, item 5). Not a test: run it on a quiet machine.
#
#   RDKAFKA_PERF=/path/to/rdkafka_performance bash bench/client_bench.sh
#
# Environment: RDKAFKA_PERF (required; docs/benchmarks.md says how to build it), CAIRN
# (default target/release/cairn, built if missing), RUNS (default 3), COUNT (records per run,
# default 2000000), LINGER_MS (default 5), BATCH_SIZES (batch.size in bytes for both tools,
# space-separated, default "1000000 16384": librdkafka's default, then the Java client's),
# IN_FLIGHT (max.in.flight.requests.per.connection for both, default 5: the Java client's
# default; librdkafka's own is 1000000), ACKS (space-separated, default "1 all"; 0 works too),
# DURABILITY (the topics' durability, default fsync: the node answers after the fsync that
# holds a batch; replicate answers from the page cache, so the clients' own costs show).
#
# Every run: 100-byte records, one partition, loopback, a topic of its own. For each batch
# size and each acks (1, all) the two tools run alternately, RUNS times each, against one
# fresh node (its own data directory under /tmp, a free port). It prints one line per run
# and a table of medians with the ratio cairn / librdkafka, then stops the node.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

RDK="${RDKAFKA_PERF:?set RDKAFKA_PERF to the rdkafka_performance binary}"
CAIRN="${CAIRN:-${CARGO_TARGET_DIR:-target}/release/cairn}"
RUNS="${RUNS:-3}"
COUNT="${COUNT:-2000000}"
LINGER_MS="${LINGER_MS:-5}"
BATCH_SIZES="${BATCH_SIZES:-1000000 16384}"
IN_FLIGHT="${IN_FLIGHT:-5}"
ACKS="${ACKS:-1 all}"
DURABILITY="${DURABILITY:-fsync}"
WORK="$(mktemp -d /tmp/cairn-client-bench.XXXXXX)"
NODE_PID=""

if [ ! -x "$CAIRN" ]; then
  cargo build --release -p cairn-node --bin cairn
fi

PORT="$(free_port)"
HTTP_PORT="$(free_port)"
BOOTSTRAP="127.0.0.1:$PORT"

trap 'stop_node; rm -rf "$WORK"' EXIT

"$CAIRN" dev --data-dir "$WORK/data" --listener "$BOOTSTRAP" \
  --http-listener "127.0.0.1:$HTTP_PORT" >"$WORK/node.log" 2>&1 &
NODE_PID=$!
wait_for_port "$PORT"

create_topic() { # topic
  "$CAIRN" topic create "$1" --partitions 1 --config "durability=$DURABILITY" \
    --bootstrap "$BOOTSTRAP" >/dev/null
}

rdkafka_rate() { # topic acks batch-size
  "$RDK" -P -t "$1" -p 0 -b "$BOOTSTRAP" -s 100 -c "$COUNT" -a "$2" \
    -X "linger.ms=$LINGER_MS" -X "batch.size=$3" -X "max.in.flight=$IN_FLIGHT" -u \
    >"$WORK/run.txt" 2>&1
  rate_of "$WORK/run.txt"
}

cairn_rate() { # topic acks batch-size
  "$CAIRN" bench produce "$1" --partition 0 --records "$COUNT" --record-size 100 \
    --acks "$2" --linger-ms "$LINGER_MS" --batch-size "$3" \
    --max-in-flight-requests-per-connection "$IN_FLIGHT" --bootstrap "$BOOTSTRAP" \
    --output json 2>/dev/null >"$WORK/run.json"
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1]));
assert r["records_acked"] == r["records"], r; print(int(r["records_per_s"]))' "$WORK/run.json"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| batch.size | acks | librdkafka (rec/s) | cairn bench (rec/s) | cairn / librdkafka |" \
  >"$WORK/table.md"
echo "| --- | --- | --- | --- | --- |" >>"$WORK/table.md"
for batch in $BATCH_SIZES; do
  for acks in $ACKS; do
    wire_acks=$acks
    [ "$acks" = all ] && wire_acks=-1
    rdk="" crn=""
    for run in $(seq 1 "$RUNS"); do
      create_topic "rdk-$batch-$acks-$run"
      create_topic "cairn-$batch-$acks-$run"
      r=$(rdkafka_rate "rdk-$batch-$acks-$run" "$wire_acks" "$batch")
      c=$(cairn_rate "cairn-$batch-$acks-$run" "$acks" "$batch")
      echo "batch.size=$batch acks=$acks run $run: librdkafka $r/s, cairn $c/s" \
        "(load $(cut -d' ' -f1 /proc/loadavg))"
      rdk+=" $r"; crn+=" $c"
    done
    mr=$(echo "$rdk" | median)
    mc=$(echo "$crn" | median)
    printf '| %s | %s | %s | %s | %s |\n' "$batch" "$acks" "$mr" "$mc" \
      "$(awk -v c="$mc" -v r="$mr" 'BEGIN { printf "%.2f", c / r }')" >>"$WORK/table.md"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "medians of $RUNS runs ($COUNT records of 100 bytes, one partition, linger.ms=$LINGER_MS," \
  "max.in.flight=$IN_FLIGHT, durability=$DURABILITY):"
cat "$WORK/table.md"
