"""Compaction figures, each beside the machine's own floor measured in the same run:

  1. compaction throughput (MB/s of input, from the compactor's own timing of its pass) of a
     keyed table (`--keys` keys updated `--updates` times, `--value` bytes each) switched from
     delete to compact, against the machine's raw rewrite rate (read a file of up to 1 GiB and
     write a copy, fsynced);
  2. produce p99 (acks=all, 1 KiB records at a fixed rate to another topic) while the
     compactor works, against the same producer idle before and after (the lower of the two);
  3. bytes of segment objects in the bucket (the default local-directory archive) once the
     archive is compacted and the grace period over, against the live keys' own size and
     against what was uploaded before compaction.

Usage: bench/compaction.sh [--keys N] [--updates N] [--value BYTES] (builds a release silt).
Prints one JSON line last.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from transactions import start_silt  # noqa: E402


def status(admin, topic):
    with urllib.request.urlopen(f"http://{admin}/v1/status", timeout=5) as r:
        body = json.load(r)
    return next(t for t in body["topics"] if t["name"] == topic)["partitions"][0]


def wait(what, condition, timeout=3600):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def raw_rewrite_rate(directory: Path, size: int) -> float:
    """MB/s of reading a file of `size` bytes and writing a copy, fsynced (page cache cold
    for neither: the compactor reads segments the producer just wrote)."""
    source, copy = directory / "raw.src", directory / "raw.copy"
    chunk = os.urandom(1 << 20)
    with open(source, "wb") as f:
        for _ in range(size >> 20):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    start = time.monotonic()
    with open(source, "rb") as src, open(copy, "wb") as dst:
        while block := src.read(4 << 20):
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    elapsed = time.monotonic() - start
    source.unlink()
    copy.unlink()
    return size / elapsed / 1e6


def produce_table(bootstrap, topic, keys, updates, value):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20,
                  "queue.buffering.max.messages": 2_000_000, "compression.type": "none"})
    payload = b"v" * value
    for round_ in range(updates):
        for k in range(keys):
            while True:
                try:
                    p.produce(topic, payload, key=b"key-%08d" % k, partition=0)
                    break
                except BufferError:
                    p.poll(0.05)
        p.poll(0)
        if round_ % 10 == 9:
            print(f"  produced {round_ + 1}/{updates} rounds", file=sys.stderr)
    assert p.flush(120) == 0


class LatencyProbe:
    """A producer sending 1 KiB records at `rate`/s with acks=all, noting each latency."""

    def __init__(self, bootstrap, topic, rate):
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
        self.topic, self.rate = topic, rate
        self.latencies = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        payload = os.urandom(1024)
        interval = 1 / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            sent = time.monotonic()
            self.producer.produce(self.topic, payload, on_delivery=lambda err, msg, sent=sent:
                                  self.latencies.append(time.monotonic() - sent) if err is None else None)
            self.producer.poll(0)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.producer.flush(30)

    def measure(self, during):
        self.latencies = []
        self.stop.clear()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        during()
        self.stop.set()
        self.thread.join()
        values = sorted(self.latencies)
        return {"p50_ms": 1000 * statistics.median(values), "p99_ms": 1000 * values[int(len(values) * 0.99) - 1],
                "count": len(values)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--value", type=int, default=100)
    parser.add_argument("--probe-rate", type=int, default=500)
    parser.add_argument("--compaction-bytes-per-sec", type=int, default=0,
                        help="the compactor's read cap (compaction_bytes_per_sec; 0: none)")
    parser.add_argument("--compaction-nice", type=int, default=None,
                        help="the compactor thread's niceness (compaction_thread_nice; default: silt's)")
    args = parser.parse_args()
    binary = ROOT / "target" / "release" / "silt"
    result = {"keys": args.keys, "updates": args.updates, "value_bytes": args.value,
              "compaction_bytes_per_sec": args.compaction_bytes_per_sec}
    with tempfile.TemporaryDirectory(dir=ROOT / "target") as tmp:
        data = Path(tmp) / "data"
        process, bootstrap, admin_addr = start_silt(binary, data, [
            "--set", "compaction_check_interval_ms=500", "--set", "archive_compaction_grace_ms=1000",
            "--set", "archive_check_interval_ms=500", "--set", "archive_upload_interval_ms=2000",
            "--set", f"compaction_bytes_per_sec={args.compaction_bytes_per_sec}",
            *([] if args.compaction_nice is None else ["--set", f"compaction_thread_nice={args.compaction_nice}"]),
        ])
        try:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            for name, config in [("table", {"segment.bytes": str(64 << 20)}), ("probe", {})]:
                admin.create_topics([NewTopic(name, 1, 1, config=config)])[name].result(30)
            start = time.monotonic()
            produce_table(bootstrap, "table", args.keys, args.updates, args.value)
            result["produce_s"] = round(time.monotonic() - start, 1)
            end = status(admin_addr, "table")["high_watermark"]
            wait("the archive to take the table",
                 lambda: (status(admin_addr, "table")["archive"] or {}).get("archived_next_offset") == end)
            archive_dir = data / "archive"
            def table_objects():
                return sum(p.stat().st_size for p in archive_dir.rglob("*.log") if "/table" in str(p))
            uploaded = table_objects()
            local_bytes = status(admin_addr, "table")["local_bytes"]
            result["table_bytes"] = local_bytes
            # Idle: once the page cache has written the table back.
            os.sync()
            time.sleep(3)
            probe = LatencyProbe(bootstrap, "probe", args.probe_rate)
            result["produce_idle"] = probe.measure(lambda: time.sleep(10))

            def compact():
                resource = ConfigResource(ConfigResource.Type.TOPIC, "table", incremental_configs=[
                    ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
                list(admin.incremental_alter_configs([resource]).values())[0].result(30)
                t = time.monotonic()
                wait("local compaction", lambda: status(admin_addr, "table")["compaction"]["cleaned_to"] >= end)
                result["compaction_s"] = round(time.monotonic() - t, 2)

            result["produce_during_compaction"] = probe.measure(compact)
            after = status(admin_addr, "table")
            os.sync()
            time.sleep(3)
            result["produce_idle_after"] = probe.measure(lambda: time.sleep(10))
            result["raw_rewrite_mb_s"] = round(raw_rewrite_rate(Path(tmp), min(local_bytes, 1 << 30)), 1)
            passes = after["compaction"]
            # The compactor's own figure: bytes its last pass read over its duration (the
            # wall time above also holds the wait for its next check).
            result["compaction_read_bytes"] = passes["last_pass_read_bytes"]
            result["compaction_pass_s"] = passes["last_pass_duration_ms"] / 1000
            result["compaction_read_mb_s"] = round(
                passes["last_pass_read_bytes"] / max(passes["last_pass_duration_ms"], 1) / 1e3, 1)
            # Of input: the table's bytes over the pass (which reads them twice: map, then clean).
            result["compaction_input_mb_s"] = round(local_bytes / max(passes["last_pass_duration_ms"], 1) / 1e3, 1)
            result["compaction_input_vs_raw_rewrite"] = round(
                result["compaction_input_mb_s"] / result["raw_rewrite_mb_s"], 2)
            result["local_bytes_after"] = after["local_bytes"]
            idle_p99 = min(result["produce_idle"]["p99_ms"], result["produce_idle_after"]["p99_ms"])
            result["p99_during_vs_idle"] = round(result["produce_during_compaction"]["p99_ms"] / idle_p99, 2)
            wait("archive compaction", lambda: (status(admin_addr, "table")["archive"] or {}).get("compacted_to", 0) >= end)
            wait("replaced objects deleted",
                 lambda: (status(admin_addr, "table")["archive"] or {}).get("compaction_deferred_segments") == 0)
            bucket = table_objects()
            live = args.keys * (len(b"key-00000000") + args.value)
            result["bucket_bytes_before"] = uploaded
            result["bucket_bytes_after"] = bucket
            result["live_key_bytes"] = live
            result["bucket_after_vs_live"] = round(bucket / live, 2)
            result["bucket_after_vs_before"] = round(bucket / uploaded, 4)
        finally:
            process.terminate()
            process.wait(60)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
