"""Consumer-group figures, beside the machine's own fdatasync rate measured in the same run.

  1. raw fdatasync rate: 256-byte pwrite + fdatasync, as fast as the disk goes;
  2. durable offset commits per second (OffsetCommit answered only after fdatasync), from
     1 committer and from 32 concurrent committers (librdkafka, synchronous commits);
  3. fail-over: three members on six partitions while a producer writes to each partition every
     20 ms; time from a member's death (SIGKILL, session.timeout.ms=6000) to its partitions being
     consumed again, and the same for a clean leave (SIGTERM: LeaveGroup).

Usage: bench/groups.sh (builds a release silt, runs this with the venv's Python).
"""

import argparse
import json
import os
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
sys.path.insert(0, str(ROOT / "bench"))
from produce_consume import start_silt  # noqa: E402

MEMBER = ROOT / "tests" / "clients" / "group_member.py"


def raw_fsync_rate(directory: Path, seconds=3.0) -> float:
    path = directory / "raw-fsync"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    os.posix_fallocate(fd, 0, 64 << 20)
    count, position, start = 0, 0, time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            os.pwrite(fd, b"x" * 256, position)
            os.fdatasync(fd)
            position += 256
            count += 1
    finally:
        os.close(fd)
        os.unlink(path)
    return count / (time.monotonic() - start)


def commit_rate(bootstrap, committers, seconds=5.0) -> float:
    counts = [0] * committers
    stop = threading.Event()

    def run(i):
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-commit-{i}", "enable.auto.commit": False})
        consumer.assign([TopicPartition("commits", i % 6, 0)])
        offset = 0
        while not stop.is_set():
            offset += 1
            consumer.commit(offsets=[TopicPartition("commits", i % 6, offset)], asynchronous=False)
            counts[i] += 1
        consumer.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(committers)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # warm up: connections, coordinator lookups
    begin = sum(counts)
    start = time.monotonic()
    time.sleep(seconds)
    done = sum(counts) - begin
    elapsed = time.monotonic() - start
    stop.set()
    for t in threads:
        t.join()
    return done / elapsed


class Member:
    def __init__(self, bootstrap, name):
        self.events = []
        self.process = subprocess.Popen(
            [sys.executable, str(MEMBER), "--bootstrap", bootstrap, "--group", "failover", "--topic", "failover", "--name", name],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stdout:
            event = json.loads(line)
            event["at"] = time.monotonic()
            self.events.append(event)

    def assignment(self):
        held = set()
        for e in list(self.events):
            if e["event"] == "assigned":
                held |= set(e["partitions"])
            elif e["event"] == "revoked":
                held -= set(e["partitions"])
        return held


def failover(bootstrap, hard: bool) -> float:
    members = [Member(bootstrap, name) for name in "abc"]
    deadline = time.monotonic() + 60
    while sorted(len(m.assignment()) for m in members) != [2, 2, 2]:
        if time.monotonic() > deadline:
            raise RuntimeError("members did not settle")
        time.sleep(0.05)
    victim, survivors = members[2], members[:2]
    orphaned = victim.assignment()
    time.sleep(1.0)
    stopped_at = time.monotonic()
    if hard:
        victim.process.kill()
    else:
        victim.process.send_signal(signal.SIGTERM)
    victim.process.wait(30)
    # Consumed again: each orphaned partition has a message consumed by a survivor after the stop.
    while True:
        resumed = {e["partition"] for m in survivors for e in list(m.events) if e["event"] == "message" and e["at"] > stopped_at}
        if orphaned <= resumed:
            break
        if time.monotonic() - stopped_at > 60:
            raise RuntimeError("orphaned partitions were not consumed again")
        time.sleep(0.01)
    took = time.monotonic() - stopped_at
    for m in survivors:
        m.process.send_signal(signal.SIGTERM)
        m.process.wait(30)
    return took


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "silt"))
    parser.add_argument("--dir", default=str(ROOT / "target" / "bench-tmp"))
    args = parser.parse_args()
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=base))
    fsyncs = raw_fsync_rate(work)
    print(f"raw disk: {fsyncs:8.0f} fdatasync/s (256-byte writes)", flush=True)
    process, bootstrap = start_silt(Path(args.binary), work / "data", ["--set", "group_initial_rebalance_delay_ms=0"])
    stop_producing = threading.Event()
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for topic in ("commits", "failover"):
            admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(30)
        for committers in (1, 32):
            rate = commit_rate(bootstrap, committers)
            print(f"durable commits, {committers:2} committers: {rate:8.0f} commits/s  ({rate / fsyncs:.2f}x the raw fdatasync rate)", flush=True)

        def produce():
            producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
            while not stop_producing.is_set():
                for p in range(6):
                    producer.produce("failover", b"tick", partition=p)
                producer.poll(0)
                time.sleep(0.02)
            producer.flush(10)

        threading.Thread(target=produce, daemon=True).start()
        for hard in (True, False):
            took = failover(bootstrap, hard)
            how = "killed (SIGKILL, session.timeout.ms=6000)" if hard else "left cleanly (LeaveGroup)"
            print(f"member {how:44} partitions consumed again after {took:5.2f} s", flush=True)
    finally:
        stop_producing.set()
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
