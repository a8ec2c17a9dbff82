"""Tiered storage in a replicated cluster, black-box: three real nodes share one archive;
leaders are killed and paused while a producer runs and segments are uploaded. Only the
leader of the moment writes a partition's manifest, a deposed leader never stalls it, and
every acknowledged record stays readable from offset 0 through the archive."""

import json
import shutil
import threading
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import metric, silt_cli, wait_for
from test_cluster_ops import replicas_of
from test_replication import Producing, check_every_acknowledged_record, read_all

TOPIC = "tiered-rf3"


def partition_status(node, topic, partition=0):
    with urllib.request.urlopen(f"{node.admin}/v1/status", timeout=5) as r:
        status = json.load(r)
    for t in status["topics"]:
        if t["name"] == topic:
            for p in t["partitions"]:
                if p["partition"] == partition:
                    return p
    return None


def leader_archive(cluster):
    """The leader's view of the partition's archive."""
    leader = cluster.leader(TOPIC, 0)
    return partition_status(cluster.nodes[leader], TOPIC)["archive"]


def archived(cluster):
    return leader_archive(cluster)["archived_next_offset"] or 0


def tiered_cluster(cluster_factory, bucket, n=3):
    """`n` nodes sharing the archive `bucket`, archiving within a second of a write."""
    return cluster_factory(n, extra_args=(
        "--archive", str(bucket),
        "--set", "archive_check_interval_ms=200",
        "--set", "archive_upload_interval_ms=500",
        "--set", "retention_check_interval_ms=500",
    ))


def test_leader_changes_during_uploads_leave_one_archive_readable_from_zero(cluster_factory, tmp_path):
    bucket = tmp_path / "bucket"
    cluster = tiered_cluster(cluster_factory, bucket)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=3, config={
        "segment.bytes": "32768",
        # Local segments go as soon as the archive holds them: reads from 0 go to the bucket.
        "retention.local.target.ms": "1",
    })])[TOPIC].result(30)
    cluster.wait_in_sync(TOPIC, [0])
    producing = Producing(cluster.bootstrap, TOPIC, [0], pace=0.002)
    producing.wait_progress(0)
    terms = set()
    for round_ in range(4):
        before = archived(cluster)
        wait_for(lambda: archived(cluster) > before, timeout=60, what="the archive to advance")
        terms.add(leader_archive(cluster)["root_term"])
        victim = cluster.leader(TOPIC, 0)
        if round_ % 2:
            # A paused leader: replaced meanwhile, it wakes up believing it still leads,
            # with a manifest loaded at its old term.
            cluster.nodes[victim].pause()
            cluster.paused = {victim}
            producing.wait_progress(0, more=200, timeout=90)
            cluster.nodes[victim].resume()
            cluster.paused = set()
        else:
            cluster.nodes[victim].kill()
            producing.wait_progress(0, more=200, timeout=90)
            cluster.nodes[victim].start()
        cluster.wait_in_sync(TOPIC, [0])
    # The leadership goes back to its preferred replica, which may be a node that was
    # fenced as a deposed leader: leading again in a later term, it uploads again.
    before = archived(cluster)
    wait_for(lambda: archived(cluster) > before, timeout=60, what="the archive to advance after the last change")
    producing.stop()
    terms.add(leader_archive(cluster)["root_term"])
    assert len(terms) >= 3, f"roots written at terms {terms}: the writers did not change with the leaders"

    # Everything acknowledged reaches the archive, and the archive is whole.
    high_watermark = partition_status(cluster.nodes[cluster.leader(TOPIC, 0)], TOPIC)["high_watermark"]
    wait_for(lambda: archived(cluster) >= high_watermark, timeout=60, what=f"the archive to reach {high_watermark}")
    assert not leader_archive(cluster)["fenced"]
    # The listing names who wrote the last root (a leader, at its term), as the brokers see it.
    listing = silt_cli("archive", "ls", TOPIC, "--archive", str(bucket))
    assert listing.returncode == 0, listing.stderr
    [row] = [line.split() for line in listing.stdout.splitlines() if line.startswith(f"{TOPIC} ")]
    seen = leader_archive(cluster)
    writer_node = int(seen["root_writer"].split("/")[1])
    assert (int(row[-2]), row[-1]) == (seen["root_term"], "/".join(seen["root_writer"].split("/")[:2])), row
    # That writer led the partition at that term.
    assert seen["root_term"] > 0 and writer_node in range(3)
    verify = silt_cli("archive", "verify", "--archive", str(bucket))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "all good" in verify.stdout, verify.stdout

    # Every replica learned what the archive holds through the partition's log (the
    # leader's pointer), trimmed only below it, and reads from 0 come from the bucket.
    wait_for(lambda: all((partition_status(n, TOPIC)["archive"]["replicated_pointer"] or 0) >= high_watermark
                         for n in cluster.nodes), timeout=60, what="the archive pointer on every replica")
    for node in cluster.nodes:
        p = partition_status(node, TOPIC)
        assert p["local_start_offset"] <= p["archive"]["replicated_pointer"], p
        assert p["local_start_offset"] <= (p["archive"]["archived_next_offset"] or 0), p
    wait_for(lambda: partition_status(cluster.nodes[cluster.leader(TOPIC, 0)], TOPIC)["local_start_offset"] > 0,
             timeout=60, what="the leader's local log to be trimmed")
    check_every_acknowledged_record(producing, cluster.bootstrap)


class Writer:
    """An idempotent acks=all producer of numbered 1 KiB values to partition 0, in a thread:
    as fast as it can up to `bulk` records, then one every `pace` seconds until stopped."""

    def __init__(self, bootstrap, topic, bulk, pace):
        from confluent_kafka import Producer

        self.topic, self.bulk, self.pace = topic, bulk, pace
        self.acked = []  # (offset, value)
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "message.timeout.ms": 120000, "request.timeout.ms": 5000,
            "topic.metadata.refresh.interval.ms": 1000,
        })
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _delivered(self, err, msg):
        with self._lock:
            if err is not None:
                self.errors.append(err)
            else:
                self.acked.append((msg.offset(), msg.value()))

    def _run(self):
        n = 0
        while not self._stop.is_set():
            value = f"{n}:".encode().ljust(1024, b"x")
            try:
                self.producer.produce(self.topic, value, partition=0, on_delivery=self._delivered)
                n += 1
            except BufferError:
                self.producer.poll(0.05)
                continue
            self.producer.poll(0)
            if n >= self.bulk:
                time.sleep(self.pace)
        self.producer.flush(60)

    def count(self):
        with self._lock:
            return len(self.acked)

    def stop(self):
        self._stop.set()
        self.thread.join(90)


def test_a_replica_far_behind_rebuilds_from_the_bucket_and_copies_only_the_tail(cluster_factory, tmp_path):
    """A follower that was down while the archive moved past its log end rejoins: it installs
    a snapshot at the archive pointer, starts its log there, copies only the tail the archive
    does not hold yet, and, leading, serves every record from offset 0 (the old ones from the
    bucket)."""
    topic = "rebuilt"
    bucket = tmp_path / "bucket"
    cluster = tiered_cluster(cluster_factory, bucket)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3, config={
        "segment.bytes": "262144",
    })])[topic].result(30)
    cluster.wait_in_sync(topic, [0])
    writer = Writer(cluster.bootstrap, topic, bulk=2000, pace=0.01)
    wait_for(lambda: writer.count() >= 2000, timeout=120, what="2,000 records acknowledged")
    leader = cluster.leader(topic, 0)
    victim = next(i for i in range(3) if i != leader)
    node = cluster.nodes[victim]
    stopped_at = partition_status(node, topic)
    node.kill()

    # While it is down, 4,000 more records; the archive takes them and every live replica
    # forgets, in Raft, what the archive holds (a snapshot at the archive pointer).
    writer.bulk += 4000
    wait_for(lambda: writer.count() >= 6000, timeout=120, what="4,000 more records acknowledged")
    assert not writer.errors, writer.errors[:5]
    live = [n for i, n in enumerate(cluster.nodes) if i != victim]

    def forgotten():
        states = [partition_status(n, topic) for n in live]
        return all((s["replica"]["raft_purged_index"] or 0) > stopped_at["replica"]["raft_last_index"] + 100
                   for s in states)
    wait_for(forgotten, timeout=90, what="the live replicas to forget past the stopped one's log end")
    size = partition_status(cluster.nodes[leader], topic)["local_bytes"]
    assert size > 6_000_000, size

    node.start()
    cluster.wait_in_sync(topic, [0], timeout=90)

    def caught_up():
        mine = partition_status(node, topic)
        theirs = partition_status(cluster.nodes[cluster.leader(topic, 0)], topic)
        return mine if mine["archive"] and mine["high_watermark"] >= theirs["high_watermark"] - 200 else None
    rebuilt = wait_for(caught_up, timeout=90, interval=0.5, what="the stopped replica to catch up")
    # Its old log was replaced: it starts at the archive pointer, past where it stopped, and
    # copied only the tail (and what the controller and pulses say).
    assert rebuilt["local_start_offset"] > stopped_at["log_end_offset"] + 2000, (stopped_at, rebuilt)
    assert rebuilt["local_start_offset"] <= rebuilt["archive"]["replicated_pointer"], rebuilt
    # The leader shows where each replica starts, the rebuilt one's included.
    def leader_sees_the_rebuilt_start():
        lead = cluster.nodes[cluster.leader(topic, 0)]
        starts = partition_status(lead, topic)["replica"]["replica_local_starts"]
        start = partition_status(node, topic)["local_start_offset"]
        shown = metric(lead, "silt_partition_replica_local_start_offset", {"topic": topic, "partition": 0, "replica": victim})
        return len(starts) == 3 and starts.get(str(victim)) == start == shown
    wait_for(leader_sees_the_rebuilt_start, timeout=30, what="the leader to show the rebuilt replica's start")
    copied = metric(node, "silt_cluster_rpc_bytes_received_total")
    print(f"stopped at {stopped_at['log_end_offset']}, rebuilt from {rebuilt['local_start_offset']}, copied {copied:.0f} of {size} bytes")
    assert copied < size / 4, f"copied {copied} bytes of a {size}-byte partition"

    # Leading, it serves everything from 0: the history from the bucket, the tail locally.
    request = urllib.request.Request(
        f"{node.admin}/v1/partitions/{topic}/0/transfer_leadership",
        data=json.dumps({"to": victim}).encode(), method="POST",
        headers={"content-type": "application/json"})
    wait_for(lambda: _transfer(request), timeout=60, interval=1, what=f"node {victim} to take the lead")
    assert cluster.leader(topic, 0) == victim
    writer.stop()
    assert not writer.errors, writer.errors[:5]
    check_read_back(writer, cluster.bootstrap, topic)


def check_read_back(writer, bootstrap, topic):
    """Every acknowledged record is at its offset, and the numbers run 0, 1, 2... once."""
    read = read_all(bootstrap, topic, [0])[0]
    at = dict(read)
    for offset, value in writer.acked:
        assert at.get(offset) == value, f"acknowledged {value[:12]!r} at {offset}, found {at.get(offset, b'')[:12]!r}"
    numbers = [int(v.split(b":")[0]) for _, v in read]
    assert numbers == list(range(len(numbers))), "records out of order, lost or doubled"


def test_a_wiped_node_is_refused_and_its_replacement_copies_only_the_tail(cluster_factory, tmp_path):
    """A node whose disk was wiped does not rejoin under its old id (its replicas' votes and
    logs are gone); the operator decommissions it and the partition moves to a spare node,
    whose new replica starts from the archive and copies only the tail."""
    topic = "replaced"
    cluster = tiered_cluster(cluster_factory, tmp_path / "bucket", 4)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3, config={
        "segment.bytes": "262144",
    })])[topic].result(30)
    cluster.wait_in_sync(topic, [0])
    writer = Writer(cluster.bootstrap, topic, bulk=6000, pace=0.01)
    wait_for(lambda: writer.count() >= 6000, timeout=120, what="6,000 records acknowledged")
    placed = replicas_of(cluster.bootstrap, topic)[0]
    holders = [cluster.nodes[i] for i in placed]
    def forgot(node):
        p = partition_status(node, topic)
        return p.get("online") and (p["replica"]["raft_purged_index"] or 0) > 0 \
            and (p["archive"]["replicated_pointer"] or 0) > 5000
    wait_for(lambda: all(forgot(n) for n in holders), timeout=90,
             what="the replicas to forget what the archive holds")
    leader = cluster.leader(topic, 0)
    size = partition_status(cluster.nodes[leader], topic)["local_bytes"]

    dead_id = next(i for i in placed if i != leader)
    spare_id = next(i for i in range(4) if i not in placed)
    live = next(n for i, n in enumerate(cluster.nodes) if i != dead_id)
    dead = cluster.nodes[dead_id]
    dead.kill()
    shutil.rmtree(dead.data_dir)
    with pytest.raises(RuntimeError) as refused:
        dead.start(timeout=30)
    assert "data directory" in str(refused.value) and "new --node-id" in str(refused.value), refused.value

    spare = cluster.nodes[spare_id]
    before = metric(spare, "silt_cluster_rpc_bytes_received_total")
    out = silt_cli("cluster", "decommission", "--admin", live.admin.removeprefix("http://"), str(dead_id),
                   timeout=180)
    assert out.returncode == 0, out.stderr
    assert replicas_of(live.bootstrap, topic)[0] == sorted([i for i in placed if i != dead_id] + [spare_id])

    def caught_up():
        mine = partition_status(spare, topic)
        theirs = partition_status(cluster.nodes[cluster.leader(topic, 0)], topic)
        return mine if mine and mine["high_watermark"] >= theirs["high_watermark"] - 200 else None
    moved = wait_for(caught_up, timeout=90, interval=0.5, what="the new replica to catch up")
    copied = metric(spare, "silt_cluster_rpc_bytes_received_total") - before
    print(f"new replica from {moved['local_start_offset']}, copied {copied:.0f} of {size} bytes")
    assert moved["local_start_offset"] > 5000, moved
    assert copied < size / 4, f"copied {copied} bytes of a {size}-byte partition"
    writer.stop()
    assert not writer.errors, writer.errors[:5]
    check_read_back(writer, live.bootstrap, topic)


def _transfer(request):
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status == 200
    except urllib.error.HTTPError:
        return False
