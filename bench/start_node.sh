# Sourced by the bench scripts: start_node NODE_BINARY PORT LOG starts the node on a fresh
# data directory ($data) with rate limiting off (the load comes from one address, far
# above a public client's quota; by environment, which builds from before the limiter
# ignore) and `--slot-ms 250`, logging to LOG ("data" for a file in the data directory),
# stops it and removes the directory at exit, and waits until /health answers.
# Sets $data and $pid.
start_node() {
    local node=$1 port=$2 log=$3
    data=$(mktemp -d)
    [ "$log" = data ] && log="$data/node.log"
    NODE0_RATE_LIMIT=off "$node" serve --data-dir "$data" --listen "127.0.0.1:$port" \
        --slot-ms 250 >"$log" 2>&1 &
    pid=$!
    trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
    for _ in $(seq 1 50); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
        sleep 0.1
    done
}
