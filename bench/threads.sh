#!/usr/bin/env bash
# Where a node's threads spend a closed-loop run: for each thread, the share of wall time
# on a CPU and waiting in the run queue (from /proc/PID/task/TID/schedstat, 3 s in the
# middle of the run; the rest of a thread's time it slept), and the machine's idle and
# iowait over the same 3 s. A thread that sleeps while the machine is idle is waiting for
# another thread, not for a CPU.
#
#   bench/threads.sh NODE_BINARY SCENARIO [CONCURRENCY] [PORT]
#
# It also samples what the busiest thread (most CPU time so far; with THREAD=PREFIX, the
# busiest whose name starts with PREFIX, e.g. THREAD=sqlite-writer) is doing, about every
# millisecond: running, or blocked in which system call (x86_64 numbers; `futex` is a
# wait for another thread, `fsync`/`pwrite64`/`pread64` the disk).
#
# The generator is this checkout's release node0 (build it first). Threads with under
# 0.5 % of a CPU are left out.
set -eu
node=$1 scenario=$2 conc=${3:-64} port=${4:-18111}
gen="$(dirname "$0")/../target/release/node0"
. "$(dirname "$0")/start_node.sh"
start_node "$node" "$port" /dev/null
"$gen" bench --url "http://127.0.0.1:$port" --scenario "$scenario" --mode closed -c "$conc" \
    -d 6s --gates none >"$data/report.txt" 2>"$data/gen.err" &
gen_pid=$!
# Pre-signing (attestation-submit) comes before the load: wait for the load itself.
until grep -q "closed loop" "$data/gen.err"; do
    kill -0 "$gen_pid" 2>/dev/null || { cat "$data/gen.err"; exit 1; }
    sleep 0.01
done
sleep 1
# One line per thread: name-tid, ns on CPU, ns runnable but waiting.
threads() {
    for t in /proc/"$pid"/task/*; do
        printf '%s-%s %s\n' "$(tr ' ' _ <"$t/comm")" "${t##*/}" "$(cut -d' ' -f1,2 "$t/schedstat")"
    done | sort
}
threads >"$data/before"; head -1 /proc/stat >"$data/cpu_before"
busiest=$(grep "^${THREAD:-}" "$data/before" | sort -k2,2n | tail -1 | cut -d' ' -f1)
sleep 3 &
window=$!
# Builtins only, so that sampling does not load the machine: `read` of the thread's state,
# and a `read -t` on a FIFO nobody writes to as a 1 ms sleep.
mkfifo "$data/tick"
exec {tick}<>"$data/tick"
while kill -0 "$window" 2>/dev/null; do
    read -r call _ <"/proc/$pid/task/${busiest##*-}/syscall" && echo "$call"
    read -r -t 0.001 -u "$tick" _ || true
done >"$data/samples"
exec {tick}>&-
threads >"$data/after"; head -1 /proc/stat >"$data/cpu_after"
wait "$gen_pid" || true
join "$data/before" "$data/after" | awk '{
    cpu = ($4 - $2) / 3e7; runq = ($5 - $3) / 3e7
    if (cpu >= 0.5) printf "%-26s on CPU %5.1f %%  run queue %5.1f %%\n", $1, cpu, runq }'
# /proc/stat: user nice system idle iowait irq softirq steal ...
paste "$data/cpu_before" "$data/cpu_after" | awk '{
    n = (NF - 2) / 2; total = 0
    for (i = 2; i <= n + 1; i++) total += $(i + n + 1) - $i
    printf "machine: idle %.1f %%, iowait %.1f %%\n",
        100 * ($(5 + n + 1) - $5) / total, 100 * ($(6 + n + 1) - $6) / total }'
echo "$busiest, $(wc -l <"$data/samples") samples:"
sort "$data/samples" | uniq -c | sort -rn | awk '
    BEGIN { split("0 read 1 write 7 poll 17 pread64 18 pwrite64 20 writev 74 fsync 75 fdatasync 202 futex 232 epoll_wait 281 epoll_pwait", m)
            for (i = 1; i < length(m); i += 2) name[m[i]] = m[i + 1] }
    { total[NR] = $1; what[NR] = ($2 in name) ? name[$2] : $2; sum += $1 }
    END { for (i = 1; i <= NR && i <= 8; i++) printf "  %5.1f %%  %s\n", 100 * total[i] / sum, what[i] }'
grep -E "throughput" "$data/report.txt" || true
