"""Broker-side compression: an uncompressed producer into a `compression.type=zstd` topic
against the same producer into a `producer` topic (stored as sent), same run, same broker.

Reports produce MB/s (of the producer's bytes) for each, the bytes stored per topic (the
segments, which are what the archive uploads), the ratio, and the broker's CPU seconds per
GB produced for each run (from /proc), beside the machine's own single-core zstd speed on the
same values.

Usage: bench/compression.sh [--seconds 8]
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zstandard
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]


def values(n):
    """JSON events, compressible as real ones are (repeated keys, small vocabularies)."""
    rng = random.Random(16)
    words = ["checkout", "view", "cart", "search", "login", "logout", "refund", "ship"]
    return [json.dumps({
        "user": f"user-{rng.randrange(100000)}", "event": rng.choice(words), "ts": 1_700_000_000_000 + i,
        "items": [{"sku": f"sku-{rng.randrange(5000)}", "qty": rng.randrange(1, 5)} for _ in range(rng.randrange(1, 6))],
        "session": "%032x" % rng.getrandbits(128),
    }).encode() for i in range(n)]


def start(binary, data):
    process = subprocess.Popen(
        [str(binary), "serve", "--data-dir", str(data), "--kafka-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
         "--rpc-addr", "127.0.0.1:0", "--archive", "none"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "warn,silt=info"})
    for line in process.stderr:
        match = re.search(r"kafka=(\S+) admin=", line)
        if match:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, match.group(1)
    raise RuntimeError("silt did not start")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def produce(bootstrap, topic, payloads, seconds):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 1 << 20,
                  "compression.type": "none", "queue.buffering.max.kbytes": 256 * 1024})
    sent = size = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        for v in payloads:
            while True:
                try:
                    p.produce(topic, v)
                    break
                except BufferError:
                    p.poll(0.001)
            sent += 1
            size += len(v)
        p.poll(0)
    assert p.flush(120) == 0
    return size / (time.monotonic() - started), size


def stored(data, topic):
    total = 0
    for segment in (data / "topics" / topic).glob("*/*.log"):
        raw = segment.read_bytes()
        at = 0
        while at + 12 <= len(raw):
            length = int.from_bytes(raw[at + 8:at + 12], "big", signed=True)
            if length <= 0:
                break
            at += 12 + length
        total += at
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "silt"))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--dir", default=str(ROOT / "target" / "bench-tmp"))
    args = parser.parse_args()
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=base))
    payloads = values(20_000)
    blob = b"".join(payloads)
    started = time.monotonic()
    for _ in range(3):
        compressed = zstandard.ZstdCompressor(level=3).compress(blob)
    machine = 3 * len(blob) / (time.monotonic() - started)
    print(f"values: {len(payloads)} JSON events, {len(blob) / len(payloads):.0f} B each; "
          f"zstd level 3 on one core here: {machine / 1e6:.0f} MB/s, ratio {len(blob) / len(compressed):.1f}x", flush=True)
    process, bootstrap = start(Path(args.binary), work / "data")
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic("as-sent", 1, 1), NewTopic("zstd", 1, 1, config={"compression.type": "zstd"})]).values():
            f.result(30)
        results = {}
        for topic in ("as-sent", "zstd", "as-sent", "zstd"):
            cpu_before = cpu_seconds(process.pid)
            rate, size = produce(bootstrap, topic, payloads, args.seconds)
            cpu = cpu_seconds(process.pid) - cpu_before
            results.setdefault(topic, []).append((rate, size, cpu))
            print(f"  {topic:<8} produce {rate / 1e6:7.1f} MB/s   broker CPU {cpu / (size / 1e9):6.1f} s per GB", flush=True)
        best = {t: max(r[0] for r in runs) for t, runs in results.items()}
        sent = {t: sum(r[1] for r in runs) for t, runs in results.items()}
        print(f"produce into zstd topic: {best['zstd'] / 1e6:.1f} MB/s = {100 * best['zstd'] / best['as-sent']:.0f}% of "
              f"{best['as-sent'] / 1e6:.1f} MB/s into a producer topic")
        for t in ("as-sent", "zstd"):
            kept = stored(work / "data", t)
            print(f"stored {t:<8} {kept / 1e6:8.1f} MB for {sent[t] / 1e6:8.1f} MB sent ({sent[t] / kept:.1f}x)")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
