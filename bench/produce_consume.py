"""Produce and consume through silt with librdkafka (confluent-kafka), beside the raw disk.

Measured in one run, on one machine:
  1. raw disk: pwrite + fdatasync of 1 MiB into fallocated space (the disk's sequential best),
     and of 16 KiB (what one small fsynced write costs);
  2. produce with acks=-1 (answered after fdatasync), 1 KiB values, as fast as the client goes:
     MB/s and messages/s;
  3. produce at a fixed rate of half that maximum: latency p50 / p99 / p99.9, from produce()
     to the delivery report;
  4. consume everything from the start with one consumer: MB/s.

Usage: bench/produce-consume.sh (builds a release silt, runs this with the venv's Python).
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
VALUE = 1024


def raw_disk(directory: Path, size: int, seconds: float) -> float:
    path = directory / "raw-disk"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    buf = b"\x5a" * size
    written = allocated = 0
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            if written + size > allocated:
                os.posix_fallocate(fd, allocated, 32 << 20)
                allocated += 32 << 20
            os.pwrite(fd, buf, written)
            os.fdatasync(fd)
            written += size
    finally:
        os.close(fd)
        os.unlink(path)
    return written / (time.monotonic() - start)


def start_silt(binary: Path, data: Path, extra=()):
    process = subprocess.Popen(
        [str(binary), "serve", "--data-dir", str(data), "--kafka-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--rpc-addr", "127.0.0.1:0", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "warn,silt=info"},
    )
    for line in process.stderr:
        match = re.search(r"kafka=(\S+) admin=", line)
        if match:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, match.group(1)
    raise RuntimeError("silt did not start")


def producer(bootstrap):
    return Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": 1 << 20,
        "queue.buffering.max.kbytes": 256 * 1024,
        "queue.buffering.max.messages": 1_000_000,
        "compression.type": "none",
    })


def produce_max(bootstrap, topic, seconds):
    p = producer(bootstrap)
    payload = os.urandom(VALUE)
    delivered = [0]

    def on_delivery(err, _msg):
        if err is None:
            delivered[0] += 1
        else:
            raise RuntimeError(err)

    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        for _ in range(1000):
            try:
                p.produce(topic, payload, on_delivery=on_delivery)
                sent += 1
            except BufferError:
                p.poll(0.001)
        p.poll(0)
    p.flush(120)
    elapsed = time.monotonic() - start
    assert delivered[0] == sent, (delivered[0], sent)
    return sent / elapsed, sent * VALUE / elapsed, sent


def produce_at_rate(bootstrap, topic, rate, seconds):
    p = producer(bootstrap)
    payload = os.urandom(VALUE)
    latencies = []

    def on_delivery(err, _msg, sent_at):
        if err is not None:
            raise RuntimeError(err)
        latencies.append(time.monotonic() - sent_at)

    start = time.monotonic()
    sent = 0
    tick = 0.001  # send in 1 ms slices to hold the rate
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        due = int((now - start) * rate)
        while sent < due:
            sent_at = time.monotonic()
            p.produce(topic, payload, on_delivery=lambda e, m, t=sent_at: on_delivery(e, m, t))
            sent += 1
        p.poll(0)
        time.sleep(tick)
    p.flush(120)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    achieved = sent / seconds
    return achieved, pick(0.50), pick(0.99), pick(0.999), len(latencies)


def consume_all(bootstrap, topic, partitions, expected):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "bench-unused",
        "enable.auto.commit": False,
        "fetch.max.bytes": 64 << 20,
        "max.partition.fetch.bytes": 8 << 20,
        "queued.max.messages.kbytes": 512 * 1024,
    })
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    count = size = 0
    start = time.monotonic()
    while count < expected:
        batch = c.consume(10_000, 1.0)
        for m in batch:
            if m.error():
                raise RuntimeError(m.error())
            size += len(m.value())
        count += len(batch)
    elapsed = time.monotonic() - start
    c.close()
    return size / elapsed, count / elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "silt"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--dir", default=str(ROOT / "target" / "bench-tmp"))
    args = parser.parse_args()
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=base))
    print(f"bench: {args.partitions} partitions, {VALUE}-byte values, acks=-1, in {work}", flush=True)
    raw_1m = raw_disk(work, 1 << 20, 3)
    raw_16k = raw_disk(work, 16 << 10, 3)
    print(f"raw disk (pwrite+fdatasync):      1 MiB {raw_1m / 1e6:8.1f} MB/s   16 KiB {raw_16k / 1e6:6.1f} MB/s ({raw_16k / 16384:.0f} fsyncs/s)", flush=True)
    process, bootstrap = start_silt(Path(args.binary), work / "data")
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("bench", args.partitions, 1)])["bench"].result(30)
        msgs, mbs, total = produce_max(bootstrap, "bench", args.seconds)
        print(f"produce, max:                     {mbs / 1e6:8.1f} MB/s   {msgs:9.0f} msgs/s   ({100 * mbs / raw_1m:.0f}% of raw 1 MiB)", flush=True)
        rate = msgs / 2
        achieved, p50, p99, p999, n = produce_at_rate(bootstrap, "bench", rate, args.seconds)
        print(f"produce at {achieved:9.0f} msgs/s (half max): p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   p99.9 {p999:6.2f} ms   ({n} messages)", flush=True)
        consumed_mbs, consumed_msgs = consume_all(bootstrap, "bench", args.partitions, total + n)
        print(f"consume from start:               {consumed_mbs / 1e6:8.1f} MB/s   {consumed_msgs:9.0f} msgs/s   ({100 * consumed_mbs / raw_1m:.0f}% of raw 1 MiB write)", flush=True)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
