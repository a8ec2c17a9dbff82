"""Transaction figures, each beside its non-transactional twin measured in the same run:

  1. produce throughput of 1 KiB records, 100 records per transaction (`--per-txn`;
     librdkafka's transactional producer, commit after each), against the same producer
     idempotent only;
  2. commit latency: time from commit_transaction() to its return, p50 and p99;
  3. consume throughput of the same data with isolation.level=read_committed against
     read_uncommitted, from the local log (hot) and, on a topic whose every segment the
     archive took and the local log dropped, from the archive (cold; a third of its
     transactions aborted, so read_committed returns two thirds of the records);
  4. the machine's own fdatasync rate (each commit waits on a few of them).

Usage: bench/transactions.sh [--seconds N] (builds a release silt, runs this with the venv's
Python). Prints one JSON line last.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import shutil
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from groups import raw_fsync_rate  # noqa: E402

VALUE = 1024


def create(bootstrap, name, config=None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1, config=config or {})])[name].result(30)


def produce(bootstrap, topic, seconds, transactional, per_txn):
    conf = {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True,
            "queue.buffering.max.messages": 1_000_000}
    if transactional:
        conf["transactional.id"] = f"bench-{topic}"
    p = Producer(conf)
    if transactional:
        p.init_transactions(30)
    payload = os.urandom(VALUE)
    records, commits = 0, []
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if transactional:
            p.begin_transaction()
        for _ in range(per_txn):
            while True:
                try:
                    p.produce(topic, payload, partition=0)
                    break
                except BufferError:
                    p.poll(0.05)
        records += per_txn
        if transactional:
            t = time.monotonic()
            p.commit_transaction(30)
            commits.append(time.monotonic() - t)
        else:
            p.poll(0)
    p.flush(60)
    elapsed = time.monotonic() - start
    return records * VALUE / elapsed / 1e6, commits


def consume(bootstrap, topic, isolation, expected):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
                  "isolation.level": isolation, "fetch.max.bytes": 8 << 20})
    c.assign([TopicPartition(topic, 0, 0)])
    got, start = 0, time.monotonic()
    while got < expected:
        for msg in c.consume(10000, 1.0):
            if not msg.error():
                got += 1
        if time.monotonic() - start > 300:
            raise RuntimeError(f"read {got} of {expected}")
    elapsed = time.monotonic() - start
    c.close()
    return got * VALUE / elapsed / 1e6, elapsed


def start_silt(binary: Path, data: Path, extra):
    """A release silt on free ports: (process, kafka address, admin address)."""
    process = subprocess.Popen(
        [str(binary), "serve", "--data-dir", str(data), "--kafka-addr", "127.0.0.1:0",
         "--admin-addr", "127.0.0.1:0", "--rpc-addr", "127.0.0.1:0", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "RUST_LOG": "warn,silt=info"},
    )
    for line in process.stderr:
        match = re.search(r"kafka=(\S+) admin=(\S+)", line)
        if match:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, match.group(1), match.group(2)
    raise RuntimeError("silt did not start")


def only_in_the_archive(admin, topic):
    with urllib.request.urlopen(f"http://{admin}/v1/status", timeout=5) as r:
        status = json.load(r)
    parts = next(t for t in status["topics"] if t["name"] == topic)["partitions"]
    return all(p["archive"] and p["archive"]["archived_next_offset"] == p["high_watermark"] == p["local_start_offset"]
               for p in parts)


def produce_mixed(bootstrap, topic, transactions, per_txn):
    """`transactions` transactions of `per_txn` records, every third aborted; returns how
    many records were committed."""
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"bench-{topic}", "linger.ms": 5})
    p.init_transactions(30)
    payload = os.urandom(VALUE)
    committed = 0
    for t in range(transactions):
        p.begin_transaction()
        for _ in range(per_txn):
            p.produce(topic, payload, partition=0)
        if t % 3 == 2:
            p.flush(60)
            p.abort_transaction(60)
        else:
            p.commit_transaction(60)
            committed += per_txn
    return committed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--per-txn", type=int, default=100)
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "silt"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="silt-bench-txn-"))
    fsyncs = raw_fsync_rate(work)
    process, bootstrap, admin = start_silt(Path(args.binary), work / "data", [
        "--set", "archive_check_interval_ms=200", "--set", "archive_upload_interval_ms=1000",
        "--set", "retention_check_interval_ms=200"])
    try:
        config = {"segment.bytes": str(16 << 20)}
        create(bootstrap, "plain", config)
        create(bootstrap, "txn", config)
        plain_mb, _ = produce(bootstrap, "plain", args.seconds, False, args.per_txn)
        txn_mb, commits = produce(bootstrap, "txn", args.seconds, True, args.per_txn)
        commits_ms = sorted(c * 1000 for c in commits)
        p99 = commits_ms[min(len(commits_ms) - 1, int(len(commits_ms) * 0.99))]
        records = int(txn_mb * 1e6 * args.seconds / VALUE * 0.95)
        hot_uncommitted, _ = consume(bootstrap, "txn", "read_uncommitted", records)
        hot_committed, _ = consume(bootstrap, "txn", "read_committed", records)
        create(bootstrap, "cold", {"segment.bytes": str(4 << 20), "retention.local.target.ms": "1"})
        committed = produce_mixed(bootstrap, "cold", 300, args.per_txn)
        deadline = time.monotonic() + 300
        while not only_in_the_archive(admin, "cold"):
            if time.monotonic() > deadline:
                raise RuntimeError("the cold topic never left the local log")
            time.sleep(0.5)
        aborted = 300 // 3 * args.per_txn
        # Both read the whole log (read_committed skips the aborted third): MB/s of the log.
        log_mb = (committed + aborted) * VALUE / 1e6
        _, uncommitted_s = consume(bootstrap, "cold", "read_uncommitted", committed + aborted)
        _, committed_s = consume(bootstrap, "cold", "read_committed", committed)
        cold_uncommitted, cold_committed = log_mb / uncommitted_s, log_mb / committed_s
        result = {
            "raw_fdatasync_per_s": round(fsyncs),
            "records_per_transaction": args.per_txn,
            "produce_plain_mb_s": round(plain_mb, 1),
            "produce_txn_mb_s": round(txn_mb, 1),
            "txn_vs_plain": round(txn_mb / plain_mb, 2),
            "commit_p50_ms": round(statistics.median(commits_ms), 2),
            "commit_p99_ms": round(p99, 2),
            "transactions": len(commits),
            "consume_hot_read_uncommitted_mb_s": round(hot_uncommitted, 1),
            "consume_hot_read_committed_mb_s": round(hot_committed, 1),
            "committed_vs_uncommitted_hot": round(hot_committed / hot_uncommitted, 2),
            "consume_cold_read_uncommitted_mb_s": round(cold_uncommitted, 1),
            "consume_cold_read_committed_mb_s": round(cold_committed, 1),
            "committed_vs_uncommitted_cold": round(cold_committed / cold_uncommitted, 2),
        }
        print(json.dumps(result))
    finally:
        process.terminate()
        process.wait(30)
        # Gigabytes of data: never left behind.
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
