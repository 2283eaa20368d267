#!/usr/bin/env python3
"""How long this machine's disk takes to make a small write durable, alone and while
other writes stream to the same filesystem. The embedded store fsyncs its WAL once per
group commit, so this is the floor under the open-loop submit tail, and it shows whether
the node's own write volume (WAL frames, checkpoints) makes the disk slower.

    python3 bench/fsync_probe.py [BACKGROUND_MB_PER_S] [DIR]

Writes 40 KiB (about one small group commit's WAL frames) and fsyncs it, every 0.5 ms,
for 8 s, in DIR (default: a temporary directory under /tmp). With BACKGROUND_MB_PER_S > 0
a second thread writes 1 MiB blocks at that rate to another file and fsyncs every 20.
Prints the fsync latency percentiles in ms.
"""
import os
import sys
import tempfile
import threading
import time

RECORD = 40 * 1024
SECONDS = 8


def background(path, mb_per_s, stop):
    block = os.urandom(1 << 20)
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        i = 0
        while not stop.is_set():
            started = time.monotonic()
            os.pwrite(fd, block, (i % 200) << 20)
            i += 1
            if i % 20 == 0:
                os.fsync(fd)
            time.sleep(max(0.0, 1 / mb_per_s - (time.monotonic() - started)))
    finally:
        os.close(fd)


def probe(path):
    record = os.urandom(RECORD)
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    latencies = []
    try:
        end = time.monotonic() + SECONDS
        i = 0
        while time.monotonic() < end:
            os.pwrite(fd, record, (i % 500) * RECORD)
            i += 1
            started = time.perf_counter()
            os.fsync(fd)
            latencies.append((time.perf_counter() - started) * 1e3)
            time.sleep(0.0005)
    finally:
        os.close(fd)
    return sorted(latencies)


def main():
    mb_per_s = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    base = sys.argv[2] if len(sys.argv) > 2 else None
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        stop = threading.Event()
        writer = None
        if mb_per_s > 0:
            writer = threading.Thread(
                target=background, args=(os.path.join(tmp, "background"), mb_per_s, stop)
            )
            writer.start()
        try:
            lat = probe(os.path.join(tmp, "probe"))
        finally:
            stop.set()
            if writer:
                writer.join()
    n = len(lat)
    print(
        f"background {mb_per_s:g} MB/s: {n} fsyncs of 40 KiB, ms "
        f"p50 {lat[n // 2]:.3f} p95 {lat[int(n * 0.95)]:.3f} p99 {lat[int(n * 0.99)]:.3f} "
        f"p99.9 {lat[int(n * 0.999)]:.3f} max {lat[-1]:.3f}"
    )


if __name__ == "__main__":
    main()
