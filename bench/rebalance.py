"""Rebalance figures of the two group protocols, same run, same machine:

  a group of `--members - 1` members over `--partitions` partitions, consuming records a producer
  writes to every partition every `--period-ms`; then one more member joins. For each protocol
  (KIP-848 `consumer`, and the classic protocol with the cooperative-sticky assignor):

  1. time from the new member's start to a balanced assignment (every member holding
     floor or ceil of partitions / members, from the members' own assignment events);
  2. the consumption pause of partitions that stayed with their owner: the longest gap between
     two records consumed from such a partition across the rebalance, beside the producer's
     period (the pause the rebalance added is the difference).

Usage: bench/rebalance.sh [--members N] [--partitions N] (builds a release silt).
Prints one JSON line last.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from transactions import start_silt  # noqa: E402

MEMBER = ROOT / "tests" / "clients" / "group_member.py"


class Member:
    def __init__(self, bootstrap, group, topic, name, protocol):
        args = [sys.executable, str(MEMBER), "--bootstrap", bootstrap, "--group", group, "--topic", topic,
                "--name", name, "--protocol", protocol]
        if protocol == "classic":
            args += ["--strategy", "cooperative-sticky"]
        self.events = []
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stdout:
            self.events.append(json.loads(line))

    def held(self):
        held = set()
        for e in list(self.events):
            if e["event"] == "assigned":
                held |= set(e["partitions"])
            elif e["event"] == "revoked":
                held -= set(e["partitions"])
        return held

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def produce_forever(bootstrap, topic, partitions, period, stop):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    i = 0
    while not stop.is_set():
        for partition in range(partitions):
            p.produce(topic, b"%d" % i, partition=partition)
        p.poll(0)
        i += 1
        time.sleep(period)
    p.flush(30)


def balanced(members, partitions):
    sizes = [len(m.held()) for m in members]
    low, high = partitions // len(members), -(-partitions // len(members))
    union = set().union(*(m.held() for m in members))
    return len(union) == partitions and all(low <= s <= high for s in sizes)


def run(bootstrap, protocol, members, partitions, period):
    topic = f"rebalance-{protocol}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    stop = threading.Event()
    producer = threading.Thread(target=produce_forever, args=(bootstrap, topic, partitions, period, stop), daemon=True)
    producer.start()
    group = [Member(bootstrap, f"g-{protocol}", topic, f"m{i}", protocol) for i in range(members - 1)]
    deadline = time.monotonic() + 120
    while not balanced(group, partitions):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{protocol}: the first {members - 1} members never balanced")
        time.sleep(0.05)
    time.sleep(3)  # steady consumption before the join
    before = {id(m): m.held() for m in group}
    joined_at = time.monotonic()
    newcomer = Member(bootstrap, f"g-{protocol}", topic, "newcomer", protocol)
    everyone = [*group, newcomer]
    while not balanced(everyone, partitions):
        if time.monotonic() > joined_at + 120:
            raise RuntimeError(f"{protocol}: never balanced after the join")
        time.sleep(0.01)
    balanced_after = time.monotonic() - joined_at
    time.sleep(3)
    # Longest gap between records of a partition its owner kept, around the join.
    gaps = []
    for m in group:
        kept = before[id(m)] & m.held()
        by_partition = {}
        for e in list(m.events):
            if e["event"] == "message" and e["partition"] in kept and joined_at - 2 <= e["t"] <= joined_at + balanced_after + 2:
                by_partition.setdefault(e["partition"], []).append(e["t"])
        for times in by_partition.values():
            times.sort()
            gaps.extend(b - a for a, b in zip(times, times[1:]))
    stop.set()
    producer.join()
    for m in everyone:
        m.stop()
    return {
        "balanced_after_join_s": round(balanced_after, 3),
        "kept_partition_max_gap_s": round(max(gaps), 3) if gaps else None,
        "producer_period_s": period,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--period-ms", type=int, default=200)
    args = parser.parse_args()
    binary = ROOT / "target" / "release" / "silt"
    work = Path(tempfile.mkdtemp(prefix="silt-bench-rebalance-"))
    process, bootstrap, _ = start_silt(binary, work / "data", [
        "--set", "group_initial_rebalance_delay_ms=0",
        "--set", "group_consumer_heartbeat_interval_ms=500",
    ])
    result = {"members": args.members, "partitions": args.partitions}
    try:
        for protocol in ("consumer", "classic"):
            result[protocol] = run(bootstrap, protocol, args.members, args.partitions, args.period_ms / 1000)
            print(f"  {protocol}: {result[protocol]}", file=sys.stderr)
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
