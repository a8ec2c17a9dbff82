"""Replication on one machine: three `silt serve` processes sharing its disk and two cores.

Measured in one run, each figure beside its limit from the same run:
  1. raw disk: pwrite + fdatasync of 1 MiB (the disk's sequential best) and of 16 KiB;
  2. produce, acks=-1, 1 KiB values, as fast as librdkafka goes: RF=1 on one node, then RF=3
     on three nodes (every byte written and fsynced three times on the one disk): RF=3 as a
     share of RF=1 (bar >= 25%) and of raw 1 MiB bandwidth / 3;
  3. RF=3 produce latency at half the RF=3 maximum: p50 / p99 / p99.9;
  4. fail-over: kill -9 of a partition's leader under a steady acks=all producer, until that
     partition's next acknowledgement (bar <= 3 s), with the election timeouts in use;
  5. idle cost: 1,000 partitions at RF=3 over the three nodes, nothing produced: CPU (share
     of one core, from /proc/<pid>/stat over 30 s) and RSS per node (bar <= 5% of a core);
  7. tiering under replication (`--only tiering`): three nodes archive to a real
     S3-compatible server (moto) while a producer runs at RF=3 as fast as it goes and the
     partition's leadership moves 10 times: archive lag (high watermark minus archived end on
     the leader, sampled every 200 ms), and the upload rate beside the raw multipart PUT
     bandwidth of the same server (`silt archive bench`) in the same run;
  6. catch-up from the bucket (`--only catchup`): a partition of 1 GiB archived + 64 MiB
     local tail on nodes 0-2 of four; node 2 dies with its disk and is decommissioned, so
     the partition moves to node 3: time until the new replica holds the whole log and
     bytes it received, beside a plain copy of the leader's partition directory on the
     same disk (the least a full copy would cost).

Usage: bench/replication.sh (builds a release silt, runs this with the venv's Python).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from produce_consume import produce_at_rate, produce_max, raw_disk  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"kafka=(\S+) admin=(\S+) rpc=")
HEARTBEAT_MS = 150
ELECTION_MS = 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, binary, data, extra):
        self.args = [str(binary), "serve", "--data-dir", str(data), *extra]
        self.process = None
        self.bootstrap = self.admin = None

    def start(self):
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "RUST_LOG": "warn,silt=info"},
        )
        return self

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        for line in self.process.stderr:
            match = READY.search(line)
            if match:
                self.bootstrap, self.admin = match.group(1), match.group(2)
                threading.Thread(target=lambda p=self.process: [None for _ in p.stderr], daemon=True).start()
                return self
            if time.monotonic() > deadline:
                break
        raise RuntimeError(f"silt did not start: {' '.join(self.args)}")

    def status(self):
        with urllib.request.urlopen(f"http://{self.admin}/v1/status", timeout=10) as r:
            return json.load(r)

    def kill(self):
        self.process.kill()
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def cpu_seconds(self):
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self):
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def start_cluster(binary, work, n, extra=()):
    rpc = [free_port() for _ in range(n)]
    seeds = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(rpc))
    nodes = []
    for i in range(n):
        args = [
            "--kafka-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
            "--rpc-addr", f"127.0.0.1:{rpc[i]}", "--node-id", str(i), "--seeds", seeds,
            "--set", f"raft_heartbeat_interval_ms={HEARTBEAT_MS}",
            "--set", f"raft_election_timeout_ms={ELECTION_MS}",
            *extra,
        ]
        nodes.append(Node(binary, work / f"node-{i}", args).start())
    for node in nodes:
        node.wait_ready()
    return nodes


def leaders(nodes, topic):
    """partition -> index of the node leading it (from each node's /v1/status)."""
    out = {}
    for i, node in enumerate(nodes):
        if node.process.poll() is not None:
            continue
        try:
            status = node.status()
        except OSError:
            continue
        for t in status["topics"]:
            if t["name"] != topic:
                continue
            for p in t["partitions"]:
                if (p.get("replica") or {}).get("role") == "leader":
                    out[p["partition"]] = i
    return out


def wait_leaders(nodes, topic, count, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = leaders(nodes, topic)
        if len(found) >= count:
            return found
        time.sleep(0.5)
    raise RuntimeError(f"{topic}: {len(leaders(nodes, topic))} of {count} partitions have a leader")


def create(bootstrap, topic, partitions, replication, configs=None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, replication, config=configs or {})])[topic].result(120)


# librdkafka's reconnect.backoff.max.ms, default.
CLIENT_BACKOFF_MAX_S = 10.0


def failover(nodes, rounds):
    """Kills the leader of partition 0 under a steady producer, `rounds` times: seconds from
    the kill to the partition's next acknowledgement."""
    bootstrap = ",".join(n.bootstrap for n in nodes)
    create(bootstrap, "failover", 1, 3, {"min.insync.replicas": "2"})
    wait_leaders(nodes, "failover", 1)
    acked = []
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def run():
        config = {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 1, "request.timeout.ms": 5000, "topic.metadata.refresh.interval.ms": 1000,
                  "message.timeout.ms": 120000}
        if os.environ.get("BENCH_CLIENT_DEBUG"):
            # What the client did between a kill and its next acknowledgement (to stderr).
            config["debug"] = os.environ["BENCH_CLIENT_DEBUG"]
        p = Producer(config)

        def done(err, msg):
            if err is not None:
                errors.append(err)
            else:
                # When acknowledged, and when produced (the record's create time, wall clock).
                with lock:
                    acked.append((time.monotonic(), msg.timestamp()[1] / 1000))

        while not stop.is_set():
            p.produce("failover", b"x" * 100, partition=0, on_delivery=done)
            p.poll(0.002)
        p.flush(60)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    times = []
    restarted = time.monotonic()
    for _ in range(rounds):
        # librdkafka keeps growing its reconnect backoff for a broker it tried while that was
        # down, until reconnect.backoff.max.ms (10 s) has passed since; a kill sooner after the
        # last restart measures that backoff (up to 4 s more when the restarted node is the
        # next leader), not the fail-over.
        time.sleep(max(2.0, CLIENT_BACKOFF_MAX_S + 1 - (time.monotonic() - restarted)))
        victim = wait_leaders(nodes, "failover", 1)[0]
        killed = time.monotonic()
        killed_wall = time.time()
        nodes[victim].kill()
        elected = None
        while True:
            # A record produced after the kill (one answered just after it was in flight).
            with lock:
                after = [t for t, created in acked if created > killed_wall + 0.001]
            if elected is None and leaders(nodes, "failover").get(0) not in (None, victim):
                elected = time.monotonic() - killed
            if after:
                times.append(after[0] - killed)
                break
            if time.monotonic() - killed > 60:
                raise RuntimeError("no acknowledgement within 60 s of the kill")
            time.sleep(0.005)
        # Where the time went: the election (a survivor's status says it leads) and the
        # client (its metadata refresh and retry) after it.
        print(f"  kill {len(times)} at {killed_wall:.3f}: node {victim}; new leader after {elected if elected is not None else float('nan'):.2f} s, "
              f"next acknowledgement after {times[-1]:.2f} s", flush=True)
        nodes[victim].start().wait_ready()
        restarted = time.monotonic()
        # Wait for the restarted node to be back in the in-sync set before the next kill.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            leader = leaders(nodes, "failover").get(0)
            if leader is not None:
                for t in nodes[leader].status()["topics"]:
                    if t["name"] == "failover" and len(t["partitions"][0]["replica"]["in_sync"]) == 3:
                        deadline = 0
            time.sleep(0.2)
    stop.set()
    thread.join(120)
    if errors:
        raise RuntimeError(f"the producer saw errors: {errors[:3]}")
    return times


def idle_cost(nodes, seconds):
    bootstrap = ",".join(n.bootstrap for n in nodes)
    for t in range(10):
        create(bootstrap, f"idle-{t}", 100, 3)
    for t in range(10):
        wait_leaders(nodes, f"idle-{t}", 100)
    time.sleep(5)  # let leaderships settle back to their preferred replicas
    before = [n.cpu_seconds() for n in nodes]
    start = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    after = [n.cpu_seconds() for n in nodes]
    return [(a - b) / elapsed for a, b in zip(after, before)], [n.rss_mib() for n in nodes]


def produce_bytes(bootstrap, topic, total, value_bytes=16 << 10):
    """Produces `total` bytes of `value_bytes` values to partition 0, acks=all."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "batch.size": 1 << 20, "enable.idempotence": True})
    value = b"x" * value_bytes
    for _ in range(total // value_bytes):
        while True:
            try:
                producer.produce(topic, value, partition=0)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(120) == 0


def partition_of(node, topic):
    for t in node.status()["topics"]:
        if t["name"] == topic:
            return t["partitions"][0]
    return None


def rpc_bytes_received(node):
    with urllib.request.urlopen(f"http://{node.admin}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("silt_cluster_rpc_bytes_received_total "):
                return float(line.split()[1])
    return 0.0


def catchup(binary, work, archived_mib, tail_mib):
    """Scenario 6: returns (seconds, bytes received, partition bytes, plain copy seconds)."""
    segment = 128 << 20
    nodes = start_cluster(binary, work / "catchup", 4, [
        "--archive", str(work / "bucket"), "--set", "archive_check_interval_ms=200"])
    try:
        bootstrap = ",".join(n.bootstrap for n in nodes)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("catchup", 1, 3, config={"segment.bytes": str(segment)})])["catchup"].result(30)
        wait_leaders(nodes, "catchup", 1)
        produce_bytes(bootstrap, "catchup", (archived_mib + tail_mib) << 20)
        holders = [i for i in range(4) if (partition_of(nodes[i], "catchup") or {}).get("online")]
        # The sealed segments reach the bucket; the active one (the tail) stays local.
        deadline = time.monotonic() + 600
        while True:
            parts = [partition_of(nodes[i], "catchup") for i in holders]
            if all((p["archive"]["replicated_pointer"] or 0) * (16 << 10) >= (archived_mib << 20) * 0.99
                   and (p["replica"]["raft_purged_index"] or 0) > 0 for p in parts):
                break
            assert time.monotonic() < deadline, parts
            time.sleep(0.5)
        leader = partition_of(nodes[holders[0]], "catchup")["replica"]["leader"]
        dead = next(i for i in holders if i != leader)
        spare = next(i for i in range(4) if i not in holders)
        size = partition_of(nodes[leader], "catchup")["local_bytes"]
        source = Path(nodes[leader].args[nodes[leader].args.index("--data-dir") + 1])
        started = time.monotonic()
        copy = work / "plain-copy"
        subprocess.run(["cp", "-r", str(source), str(copy)], check=True)
        subprocess.run(["sync"], check=True)
        plain = time.monotonic() - started
        shutil.rmtree(copy)
        nodes[dead].kill()
        before = rpc_bytes_received(nodes[spare])
        started = time.monotonic()
        subprocess.run([str(binary), "cluster", "decommission", "--admin", nodes[leader].admin, str(dead)],
                       check=True, stdout=subprocess.DEVNULL)
        while True:
            mine = partition_of(nodes[spare], "catchup")
            theirs = partition_of(nodes[leader], "catchup")
            if mine and mine.get("online") and mine["high_watermark"] >= theirs["high_watermark"]:
                break
            time.sleep(0.1)
        seconds = time.monotonic() - started
        return seconds, rpc_bytes_received(nodes[spare]) - before, size, plain
    finally:
        for node in nodes:
            node.stop()


def start_moto(work):
    """A moto S3 server on a free port with bucket `silt-bench`: (process, env for silt)."""
    import boto3
    import botocore

    port = free_port()
    log = open(work / "moto.log", "w")
    process = subprocess.Popen([str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    for _ in range(600):
        try:
            s3.create_bucket(Bucket="silt-bench")
            break
        except botocore.exceptions.EndpointConnectionError:
            time.sleep(0.1)
    env = {"AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    return process, env


def tiering(binary, work, seconds, changes):
    """Scenario 7: (raw PUT MB/s, upload MB/s, produce MB/s, lag samples in MiB)."""
    moto, env = start_moto(work)
    os.environ.update(env)
    nodes = []
    try:
        raw = subprocess.run([str(binary), "archive", "bench", "--archive", "s3://silt-bench/raw", "--json"],
                             check=True, capture_output=True, text=True, env={**os.environ, **env})
        raw_put = json.loads(raw.stdout)["put_mb_s"]
        # One object at a time, as one partition's uploads go.
        raw_one = subprocess.run([str(binary), "archive", "bench", "--archive", "s3://silt-bench/raw1",
                                  "--concurrency", "1", "--json"],
                                 check=True, capture_output=True, text=True, env={**os.environ, **env})
        raw_put_one = json.loads(raw_one.stdout)["put_mb_s"]
        nodes = start_cluster(binary, work / "tiering", 3, [
            "--archive", "s3://silt-bench/cluster", "--set", "archive_check_interval_ms=200",
            "--set", "archive_upload_interval_ms=1000"])
        bootstrap = ",".join(n.bootstrap for n in nodes)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("tiered", 1, 3, config={"segment.bytes": str(64 << 20)})])["tiered"].result(30)
        wait_leaders(nodes, "tiered", 1)
        value = 16 << 10
        sent = [0]
        stop = threading.Event()

        def produce():
            producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                                 "batch.size": 1 << 20, "enable.idempotence": True,
                                 "topic.metadata.refresh.interval.ms": 1000})
            payload = b"x" * value
            while not stop.is_set():
                try:
                    producer.produce("tiered", payload, partition=0)
                    sent[0] += 1
                except BufferError:
                    producer.poll(0.05)
                producer.poll(0)
            producer.flush(120)

        thread = threading.Thread(target=produce, daemon=True)
        started = time.monotonic()
        thread.start()
        lags = []
        change_every = seconds / (changes + 1)
        next_change = started + change_every
        done_changes = 0
        while time.monotonic() - started < seconds:
            parts = {i: partition_of(n, "tiered") for i, n in enumerate(nodes)}
            leader = next((i for i, p in parts.items()
                           if p and p.get("online") and p.get("archive") and p["replica"]["role"] == "leader"), None)
            if leader is not None:
                p = parts[leader]
                archived = p["archive"]["archived_next_offset"] or 0
                lags.append((p["high_watermark"] - archived) * value / 2**20)
                if time.monotonic() >= next_change and done_changes < changes:
                    to = (leader + 1) % 3
                    request = urllib.request.Request(
                        f"http://{nodes[leader].admin}/v1/partitions/tiered/0/transfer_leadership",
                        data=json.dumps({"to": to}).encode(), method="POST",
                        headers={"content-type": "application/json"})
                    try:
                        urllib.request.urlopen(request, timeout=30).read()
                        done_changes += 1
                    except Exception as e:  # noqa: BLE001 - counted, retried at the next sample
                        print(f"  transfer failed: {e}", flush=True)
                    next_change += change_every
            time.sleep(0.2)
        stop.set()
        thread.join(180)
        produced_s = time.monotonic() - started

        def uploaded_bytes():
            total = 0.0
            for n in nodes:
                with urllib.request.urlopen(f"http://{n.admin}/metrics", timeout=10) as r:
                    for line in r.read().decode().splitlines():
                        if line.startswith("silt_archive_uploaded_bytes_total "):
                            total += float(line.split()[1])
            return total

        at_stop = uploaded_bytes()
        # Drain: the archive reaches the high watermark (but for the control entries at the
        # log's end: archive pointers, a new leader's first entry).
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            parts = [partition_of(n, "tiered") for n in nodes]
            leader = next((p for p in parts
                           if p and p.get("online") and p.get("archive") and p["replica"]["role"] == "leader"), None)
            if leader and (leader["archive"]["archived_next_offset"] or 0) >= leader["high_watermark"] - 30:
                break
            time.sleep(0.2)
        total_s = time.monotonic() - started
        uploaded = uploaded_bytes()
        drain_s = total_s - produced_s
        produced = sent[0] * value
        return {
            "raw_put": raw_put, "raw_put_one": raw_put_one,
            "upload": uploaded / total_s / 1e6, "drain_upload": (uploaded - at_stop) / drain_s / 1e6,
            "produce": produced / produced_s / 1e6, "lags": lags, "changes": done_changes, "drain_s": drain_s,
        }
    finally:
        for node in nodes:
            node.stop()
        moto.terminate()
        moto.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "silt"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--dir", default=str(ROOT / "target" / "bench-tmp"))
    parser.add_argument("--only", choices=["all", "failover", "catchup", "tiering"], default="all",
                        help="failover: just the fail-over rounds (on a fresh cluster); "
                             "catchup: just the catch-up from the bucket; "
                             "tiering: just archive lag and upload rate under replication")
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--archived-mib", type=int, default=1024)
    parser.add_argument("--tail-mib", type=int, default=64)
    args = parser.parse_args()
    binary = Path(args.binary)
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=base))
    print(f"bench: replication, {args.partitions} partitions, 1 KiB values, acks=-1, in {work}", flush=True)
    raw_1m = raw_disk(work, 1 << 20, 3)
    raw_16k = raw_disk(work, 16 << 10, 3)
    print(f"raw disk (pwrite+fdatasync):    1 MiB {raw_1m / 1e6:8.1f} MB/s   16 KiB {raw_16k / 1e6:6.1f} MB/s ({raw_16k / 16384:.0f} fsyncs/s)", flush=True)
    nodes = []
    if args.only == "catchup":
        try:
            seconds, copied, size, plain = catchup(binary, work, args.archived_mib, args.tail_mib)
            print(f"catch-up of a new replica ({args.archived_mib} MiB archived + {args.tail_mib} MiB tail): "
                  f"{seconds:.1f} s, {copied / 2**20:.1f} MiB received ({100 * copied / size:.1f}% of the "
                  f"partition's {size / 2**20:.0f} MiB); a plain copy of the leader's partition on this disk: "
                  f"{plain:.1f} s ({size / 2**20 / plain:.0f} MiB/s)", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.only == "tiering":
        try:
            r = tiering(binary, work, max(args.seconds, 30.0), args.changes)
            lags = sorted(r["lags"])
            print(f"tiering under replication, {r['changes']} leader changes: produce {r['produce']:.1f} MB/s; "
                  f"archive lag p50 {lags[len(lags) // 2]:.0f} MiB, max {lags[-1]:.0f} MiB (segments of 64 MiB); "
                  f"drained {r['drain_s']:.1f} s after the producer stopped", flush=True)
            print(f"upload {r['upload']:.1f} MB/s over the run ({100 * r['upload'] / r['produce']:.0f}% of the produce rate), "
                  f"{r['drain_upload']:.1f} MB/s while draining = {100 * r['drain_upload'] / r['raw_put_one']:.0f}% of raw PUT "
                  f"one object at a time ({r['raw_put_one']:.1f} MB/s), {100 * r['drain_upload'] / r['raw_put']:.0f}% of raw PUT "
                  f"four at a time ({r['raw_put']:.1f} MB/s)", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.only == "failover":
        try:
            nodes = start_cluster(binary, work / "cluster", 3)
            times = sorted(failover(nodes, args.kills))
            print(f"fail-over over {len(times)} kill -9 of the leader: min {times[0]:.2f} s   "
                  f"median {times[len(times) // 2]:.2f} s   max {times[-1]:.2f} s (bar <= 3 s)", flush=True)
        finally:
            for node in nodes:
                node.stop()
            shutil.rmtree(work, ignore_errors=True)
        return
    try:
        single = Node(binary, work / "single", ["--kafka-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--rpc-addr", "127.0.0.1:0"]).start().wait_ready()
        nodes.append(single)
        create(single.bootstrap, "rf1", args.partitions, 1)
        _, rf1, _ = produce_max(single.bootstrap, "rf1", args.seconds)
        print(f"RF=1, one node, max:            {rf1 / 1e6:8.1f} MB/s   ({100 * rf1 / raw_1m:.0f}% of raw 1 MiB)", flush=True)
        single.stop()
        nodes.clear()

        nodes = start_cluster(binary, work / "cluster", 3)
        bootstrap = ",".join(n.bootstrap for n in nodes)
        create(bootstrap, "rf3", args.partitions, 3, {"min.insync.replicas": "2"})
        wait_leaders(nodes, "rf3", args.partitions)
        msgs, rf3, _ = produce_max(bootstrap, "rf3", args.seconds)
        print(f"RF=3, three nodes, max:         {rf3 / 1e6:8.1f} MB/s   {100 * rf3 / rf1:.0f}% of RF=1 (bar >= 25%), "
              f"{100 * rf3 / (raw_1m / 3):.0f}% of raw 1 MiB / 3", flush=True)
        achieved, p50, p99, p999, n = produce_at_rate(bootstrap, "rf3", msgs / 2, args.seconds)
        print(f"RF=3 at {achieved:8.0f} msgs/s (half max): p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   p99.9 {p999:6.2f} ms   ({n} messages; "
              f"one 16 KiB fsync: {1000 * 16384 / raw_16k:.2f} ms)", flush=True)
        times = sorted(failover(nodes, args.kills))
        print(f"fail-over over {len(times)} kill -9 of the leader (heartbeat {HEARTBEAT_MS} ms, election timeout {ELECTION_MS}-{2 * ELECTION_MS} ms): "
              f"min {times[0]:.2f} s   median {times[len(times) // 2]:.2f} s   max {times[-1]:.2f} s (bar <= 3 s)", flush=True)
        for node in nodes:
            node.stop()

        # A fresh cluster for the idle cost, with small preallocation (1,000 partitions would
        # otherwise reserve 32 MiB of disk each per node).
        nodes = start_cluster(binary, work / "idle", 3, ["--set", "segment_preallocate_bytes=1048576"])
        cpu, rss = idle_cost(nodes, args.idle_seconds)
        cells = "   ".join(f"node {i}: {100 * c:4.1f}% of a core, {r:6.0f} MiB RSS" for i, (c, r) in enumerate(zip(cpu, rss)))
        print(f"idle, 1,000 partitions RF=3:    {cells} (bar <= 5%)", flush=True)
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
