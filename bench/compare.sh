#!/usr/bin/env bash
# Runs the node scenarios of BENCHMARKS.md against one node binary, 10 s each,
# with the strict gates, and writes one JSON report per scenario.
#
#   bench/compare.sh NODE_BINARY OUT_DIR [PORT]
#
# The generator is this checkout's release node0 (build it first); NODE_BINARY is the
# node under test, so two builds can be compared with the same generator.
set -u
node=$1 out=$2 port=${3:-18111}
gen="$(dirname "$0")/../target/release/node0"
mkdir -p "$out"
. "$(dirname "$0")/start_node.sh"
start_node "$node" "$port" /dev/null
run() {
    name=$1; shift
    "$gen" bench --url "http://127.0.0.1:$port" "$@" -d 10s --gates strict -q \
        --json "$out/$name.json" >"$out/$name.txt" 2>&1
    echo "$name: exit $?"
}
run health_closed --scenario health --mode closed -c 64
run health_open --scenario health --rate 20000
run get_open_cold --scenario attestation-get --rate 20000
# The same load again, now that the ids' responses are cached: the steady state.
run get_open --scenario attestation-get --rate 20000
run get_closed --scenario attestation-get --mode closed -c 64
run verify_closed --scenario verify --mode closed -c 64
run submit_closed --scenario attestation-submit --mode closed -c 64 --verify-durable
run submit_open --scenario attestation-submit --rate 5000 --verify-durable
