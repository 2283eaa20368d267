#!/usr/bin/env bash
# Starts NODE_BINARY on a fresh data directory, runs one closed-loop scenario against it
# for 5 s, and prints the throughput and the node's CPU time (user + system) per
# completed request. CPU per request varies much less from run to run than throughput on
# a shared 2-core machine, so it shows what a change saves even when the machine is noisy.
#
#   bench/cpu_per_request.sh NODE_BINARY SCENARIO [PORT]
#
# The generator is this checkout's release node0 (build it first). The node logs at info
# level to a file, as an operator's would.
set -eu
node=$1 scenario=$2 port=${3:-18111}
gen="$(dirname "$0")/../target/release/node0"
. "$(dirname "$0")/start_node.sh"
start_node "$node" "$port" data
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(ticks)
"$gen" bench --url "http://127.0.0.1:$port" --scenario "$scenario" --mode closed -c 64 -d 5s \
    --gates none -q --json "$data/report.json" >/dev/null
after=$(ticks)
python3 - "$data/report.json" "$before" "$after" "$(getconf CLK_TCK)" "$scenario" <<'EOF'
import json, sys
report, before, after, hz, scenario = sys.argv[1:]
d = json.load(open(report))
n = d["counts"]["completed"]
cpu_us = (float(after) - float(before)) / float(hz) * 1e6
print(f"{scenario}: {d['ok_rps']:.0f} req/s, node CPU {cpu_us / n:.1f} us per request ({n} requests)")
EOF
