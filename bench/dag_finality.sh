#!/usr/bin/env bash
# Submit-to-finalized latency on a local 4-validator network where every validator
# proposes: load spread over all four nodes (one `node0 bench` per node, each at a
# quarter of the rate, run at the same time), each bench measuring the finality of its
# own acknowledged attestations. Then the same with one validator killed before the run,
# and the longest time without a commit (ledger growth, polled every 20 ms) at another
# node after killing one validator under load.
#
#   bench/dag_finality.sh [RATE] [DURATION] [SLOT_MS] [PHASES]
#
# defaults: 1000 20s 250 "all-up one-dead gap"; PHASES picks the parts to run. With
# KEEP_DIR=DIR the all-up phase's network (stores and logs) is kept in DIR/all-up for
# bench/finality_breakdown.py.
#
# Needs target/release/node0 (cargo build --release -p node0; NODE0_BIN=PATH runs another
# build, for side-by-side comparisons), curl, ss and python3. Uses ports 19300-19303 on
# 127.0.0.1 and a temporary directory.
set -euo pipefail
rate=${1:-1000}
duration=${2:-20s}
slot=${3:-250}
phases=${4:-all-up one-dead gap}
bin=${NODE0_BIN:-target/release/node0}
base=19300
dir=$(mktemp -d)
net_pid=
cleanup() {
    [ -n "$net_pid" ] && kill -TERM "$net_pid" 2>/dev/null && wait "$net_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

wait_healthy() {
    for _ in $(seq 1 200); do
        curl -sf "$1/health" >/dev/null && return 0
        sleep 0.05
    done
    echo "$1 never became healthy" >&2
    return 1
}

start_net() {
    rm -rf "$dir/net"
    "$bin" testnet --validators 4 --dir "$dir/net" --base-port "$base" --slot-ms "$slot" \
        >"$dir/net.log" 2>&1 &
    net_pid=$!
    for i in 0 1 2 3; do wait_healthy "http://127.0.0.1:$((base + i))"; done
}

stop_net() {
    kill -TERM "$net_pid" 2>/dev/null || true
    wait "$net_pid" 2>/dev/null || true
    net_pid=
}

# The pid of node i's `node0 serve` (started by the testnet command): the process that
# listens on its port.
node_pid() {
    ss -ltnpH "sport = :$((base + $1))" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2
}

# One bench per listed node, at the same time, RATE split between them.
spread() {
    local label=$1
    shift
    local n=$#
    local per
    per=$(python3 -c "print($rate / $n)")
    local pids=()
    for i in "$@"; do
        "$bin" bench --url "http://127.0.0.1:$((base + i))" --scenario attestation-submit \
            --rate "$per" -d "$duration" --gates floor --finality \
            --json "$dir/$label-$i.json" >"$dir/$label-$i.txt" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
    for i in "$@"; do
        echo "$label node-$i: $(grep -E '^finality' "$dir/$label-$i.txt" || echo 'no finality line')"
    done
    python3 - "$dir" "$label" "$@" <<'EOF'
import json, sys
d, label, nodes = sys.argv[1], sys.argv[2], sys.argv[3:]
acked = final = 0
p50 = []; p99 = []
for i in nodes:
    r = json.load(open(f"{d}/{label}-{i}.json"))
    f = r.get("finality") or {}
    acked += f.get("acknowledged", 0); final += f.get("finalized", 0)
    lat = f.get("latency_ms") or {}
    if "p50" in lat: p50.append(lat["p50"]); p99.append(lat["p99"])
print(f"{label}: {final} of {acked} finalized; per-node p50 {['%.0f' % x for x in p50]} ms, p99 {['%.0f' % x for x in p99]} ms")
EOF
}

echo "rate $rate/s over the nodes, $duration, slot $slot ms, $(nproc) cores, $bin ($(git rev-parse --short HEAD) checked out)"
if [[ " $phases " == *" all-up "* ]]; then
    start_net
    spread all-up 0 1 2 3
    stop_net
    # For bench/finality_breakdown.py.
    if [ -n "${KEEP_DIR:-}" ]; then
        mkdir -p "$KEEP_DIR"
        rm -rf "$KEEP_DIR/all-up"
        cp -r "$dir/net" "$KEEP_DIR/all-up"
    fi
fi

if [[ " $phases " == *" one-dead "* ]]; then
    start_net
    kill -9 "$(node_pid 3)"
    sleep 1
    spread one-dead 0 1 2
    stop_net
fi

if [[ " $phases " != *" gap "* ]]; then
    exit 0
fi
start_net
# Longest commit gap at node-1 over 20 s after killing node-0 under load.
"$bin" bench --url "http://127.0.0.1:$((base + 1))" --scenario attestation-submit \
    --rate "$(python3 -c "print($rate / 2)")" -d 25s --gates floor >"$dir/gap-load-1.txt" 2>&1 &
l1=$!
"$bin" bench --url "http://127.0.0.1:$((base + 2))" --scenario attestation-submit \
    --rate "$(python3 -c "print($rate / 2)")" -d 25s --gates floor >"$dir/gap-load-2.txt" 2>&1 &
l2=$!
sleep 3
kill -9 "$(node_pid 0)"
python3 - "http://127.0.0.1:$((base + 1))" <<'EOF'
import json, sys, time, urllib.request
url = sys.argv[1] + "/api/consensus/status"
def size():
    return json.load(urllib.request.urlopen(url, timeout=5))["ledger_size"]
end = time.time() + 20
last, since, longest = size(), time.time(), 0.0
while time.time() < end:
    time.sleep(0.02)
    s = size()
    if s > last:
        longest = max(longest, time.time() - since)
        last, since = s, time.time()
longest = max(longest, time.time() - since)
print(f"longest commit gap at node-1 in the 20 s after node-0 was killed: {longest * 1000:.0f} ms")
EOF
wait "$l1" "$l2" || true
stop_net
