#!/usr/bin/env bash
# What the node's `/health` costs on top of its HTTP stack: the same closed-loop load
# (64 connections, 5 s) against a bare hyper server and a bare axum router answering
# the same JSON (crates/tools/examples/http_floor.rs), then against each node binary on
# a fresh data directory (rate limiting off, logging to /dev/null). Prints req/s and
# the server's CPU time (user + system) per request; twice, alternating.
#
#   bench/http_floor.sh wrk|bench NODE_BINARY...
#
# Build first: cargo build --release -p node0 && cargo build --release -p bizra-tools --example http_floor
set -u
gen=$1; shift
root="$(cd "$(dirname "$0")/.." && pwd)"
floor="$root/target/release/examples/http_floor"
port=18200
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
measure() { # LABEL PID
    local before after rps
    before=$(ticks "$2")
    if [ "$gen" = wrk ]; then
        rps=$(wrk -t1 -c64 -d5s "http://127.0.0.1:$port/health" | awk '/Requests\/sec/ {print $2}')
    else
        "$root/target/release/node0" bench --url "http://127.0.0.1:$port" --scenario health \
            --mode closed -c 64 -d 5s --gates none -q --json /tmp/http_floor.json >/dev/null 2>&1
        rps=$(python3 -c "import json; print(json.load(open('/tmp/http_floor.json'))['ok_rps'])")
    fi
    after=$(ticks "$2")
    python3 -c "print(f'$1: {$rps:,.0f} req/s, server CPU {($after - $before) / $hz * 1e6 / ($rps * 5):.1f} us per request')"
}
wait_health() {
    for _ in $(seq 1 50); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null && return
        sleep 0.1
    done
}
for _ in 1 2; do
    for mode in hyper axum; do
        "$floor" "$mode" "127.0.0.1:$port" 2>/dev/null & p=$!
        wait_health
        measure "bare $mode" $p
        kill $p; wait $p 2>/dev/null
    done
    for node in "$@"; do
        data=$(mktemp -d)
        NODE0_RATE_LIMIT=off "$node" serve --data-dir "$data" --listen "127.0.0.1:$port" \
            --slot-ms 250 >/dev/null 2>&1 & p=$!
        wait_health
        measure "$(basename "$node")" $p
        kill $p; wait $p 2>/dev/null; rm -rf "$data"
    done
done
