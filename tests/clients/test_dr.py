"""Disaster recovery from a replicated bucket, with two clusters and no mirror maker.

Cluster A archives to one bucket on moto's S3 server; the tests copy that bucket into a second
one with boto3 (independent of silt, as S3 replication or MinIO site replication would), and
cluster B, with its own data directory, takes over from the copy: topic by topic, as a whole
cluster, or as read replicas.
"""

import json

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from kafka import KafkaConsumer

from conftest import admin_json, metric, silt_cli, wait_for
from helpers import confluent_produce, confluent_read, create_topic

FAST = [
    "--set", "archive_check_interval_ms=100",
    "--set", "archive_upload_interval_ms=300",
    "--set", "archive_metadata_interval_ms=200",
]
TOPIC_CONFIG = {"segment.bytes": "65536", "retention.ms": "-1"}
PREFIX = "cluster"


def make_bucket(s3, name):
    s3.client.create_bucket(Bucket=name)
    return name


def copy_bucket(s3, source, target, keep=lambda key: True):
    """Copies every object (that `keep` accepts) from one bucket to another; returns the keys
    left behind."""
    left = []
    for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=source):
        for obj in page.get("Contents", []):
            if keep(obj["Key"]):
                s3.client.copy_object(Bucket=target, Key=obj["Key"], CopySource={"Bucket": source, "Key": obj["Key"]})
            else:
                left.append(obj["Key"])
    return left


def cluster(silt_factory, s3, name, bucket, *extra):
    return silt_factory(name=name, extra_args=["--archive", f"s3://{bucket}/{PREFIX}", *FAST, *extra], env=s3.env)


def fully_archived(silt, topic):
    status = admin_json(silt, "/v1/status")
    parts = next(t for t in status["topics"] if t["name"] == topic)["partitions"]
    return all(p["archive"] and p["archive"]["archived_next_offset"] == p["high_watermark"] for p in parts)


def produce(silt, topic, count, partitions, first=0):
    records = [(i % partitions, b"k%d" % i, b"%s-%d-" % (topic.encode(), i) + bytes([i % 256]) * (i % 200), [], None) for i in range(first, first + count)]
    delivered = confluent_produce(silt.bootstrap, topic, records)
    return [(p, offset, key, value) for (p, key, value, _, _), (_, offset) in zip(records, delivered)]


def read_all(bootstrap, topic, partitions, count, **conf):
    got = confluent_read(bootstrap, topic, list(range(partitions)), count, start=0, **conf)
    return sorted((m.partition(), m.offset(), m.key(), m.value()) for m in got)


def commit_half(bootstrap, topic, group, expected):
    """A group consumes about half of each partition and commits; returns the offsets."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    by_partition = {}
    for p, offset, _, _ in expected:
        by_partition[p] = max(by_partition.get(p, -1), offset)
    targets = [TopicPartition(topic, p, last // 2) for p, last in by_partition.items()]
    consumer.commit(offsets=targets, asynchronous=False)
    consumer.close()
    return {t.partition: t.offset for t in targets}


def groups_snapshot(s3, bucket):
    keys = [o["Key"] for o in s3.client.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/_silt/groups/").get("Contents", [])]
    snapshots = [json.loads(s3.client.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]
    return max(snapshots, key=lambda s: s["updated_ms"]) if snapshots else None


def test_a_second_cluster_recovers_topics_and_groups_from_a_copied_bucket(silt_factory, s3):
    bucket_a, bucket_b = make_bucket(s3, "region-a"), make_bucket(s3, "region-b")
    a = cluster(silt_factory, s3, "a", bucket_a)
    create_topic(a.bootstrap, "orders", partitions=3, config=TOPIC_CONFIG)
    create_topic(a.bootstrap, "payments", partitions=2, config={**TOPIC_CONFIG, "retention.bytes": "123456789"})
    orders = produce(a, "orders", 3000, 3)
    payments = produce(a, "payments", 2000, 2)
    committed = commit_half(a.bootstrap, "payments", "billing", payments)
    wait_for(lambda: fully_archived(a, "orders") and fully_archived(a, "payments"), timeout=60, what="A archived everything")
    wait_for(lambda: (groups_snapshot(s3, bucket_a) or {}).get("groups", {}).get("billing"), timeout=30, what="A wrote its group offsets to the bucket")
    snapshot = groups_snapshot(s3, bucket_a)
    assert {int(p): o["offset"] for p, o in snapshot["groups"]["billing"]["payments"].items()} == committed

    # Region A is lost; its bucket had been replicated.
    a.stop()
    copy_bucket(s3, bucket_a, bucket_b)
    # The replicated bucket answers key lookups and Parquet exports with no broker at all.
    found = silt_cli("archive", "--archive", f"s3://{bucket_b}/{PREFIX}", "find", "orders", "--key", "k7", "--all-partitions", "--format", "json", env=s3.env)
    assert found.returncode == 0, found.stderr
    assert [(r["partition"], r["offset"]) for r in map(json.loads, found.stdout.splitlines())] == [(p, o) for p, o, k, _ in orders if k == b"k7"]
    exported = silt_cli("archive", "--archive", f"s3://{bucket_b}/{PREFIX}", "export", "orders", "--to", f"s3://{bucket_b}/lake", env=s3.env)
    assert exported.returncode == 0, exported.stderr
    assert f"({len(orders)} records;" in exported.stdout, exported.stdout
    b = cluster(silt_factory, s3, "b", bucket_b)

    # Topic by topic: every archived offset reads at once, byte-identical, from the earliest.
    made = silt_cli("topic", "create", "orders", "--recover", "--brokers", b.bootstrap, env=s3.env)
    assert made.returncode == 0, made.stdout + made.stderr
    assert read_all(b.bootstrap, "orders", 3, len(orders)) == sorted(orders)
    # New produces continue after the archive's last offset, with no overlap.
    more = produce(b, "orders", 30, 3, first=3000)
    for p in range(3):
        last_old = max(o for q, o, _, _ in orders if q == p)
        assert min(o for q, o, _, _ in more if q == p) == last_old + 1
    assert read_all(b.bootstrap, "orders", 3, len(orders) + 30) == sorted(orders + more)
    # A recovered topic is an ordinary topic from now on: it survives a hard restart.
    b.restart(hard=True)
    assert read_all(b.bootstrap, "orders", 3, len(orders) + 30) == sorted(orders + more)

    # Recovering what the bucket does not hold says so.
    missing = silt_cli("topic", "create", "nope", "--recover", "--brokers", b.bootstrap)
    assert missing.returncode != 0 and "no topic 'nope' in the archive" in missing.stdout + missing.stderr

    # The whole cluster: the rest of the topics, their properties, and the groups' offsets.
    restored = silt_cli("cluster", "restore", "--from", f"s3://{bucket_b}/{PREFIX}", "--brokers", b.bootstrap, env=s3.env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "restored 1 topics" in restored.stdout and "already here): orders" in restored.stdout, restored.stdout
    described = silt_cli("topic", "describe", "payments", "--brokers", b.bootstrap)
    assert "123456789" in described.stdout, described.stdout
    # A consumer of the group resumes at its committed offsets, and reads to the end.
    consumer = KafkaConsumer("payments", bootstrap_servers=b.bootstrap, group_id="billing", enable_auto_commit=False, auto_offset_reset="none", consumer_timeout_ms=20000)
    resumed = {}
    for msg in consumer:
        resumed.setdefault(msg.partition, []).append((msg.partition, msg.offset, msg.key, msg.value))
        if sum(len(v) for v in resumed.values()) == sum(1 for p, o, _, _ in payments if o >= committed[p]):
            break
    consumer.close()
    for p in range(2):
        assert resumed[p] == [r for r in payments if r[0] == p and r[1] >= committed[p]]


def test_a_read_replica_follows_replication_and_refuses_produce(silt_factory, s3):
    bucket_a, bucket_b, own = make_bucket(s3, "primary"), make_bucket(s3, "replica"), make_bucket(s3, "reader")
    a = cluster(silt_factory, s3, "a", bucket_a)
    create_topic(a.bootstrap, "clicks", partitions=2, config=TOPIC_CONFIG)
    first = produce(a, "clicks", 2000, 2)
    wait_for(lambda: fully_archived(a, "clicks"), timeout=60, what="A archived everything")
    copy_bucket(s3, bucket_a, bucket_b)

    # Cluster B reads the replicated bucket; a bare bucket name resolves on B's own endpoint.
    b = cluster(silt_factory, s3, "b", own)
    made = silt_cli("topic", "create", "clicks", "--read-replica", bucket_b, "--brokers", b.bootstrap, env=s3.env)
    assert made.returncode == 0, made.stdout + made.stderr
    assert read_all(b.bootstrap, "clicks", 2, len(first)) == sorted(first)

    # Offsets by time resolve through the source's manifest.
    consumer = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused"})
    low, high = consumer.get_watermark_offsets(TopicPartition("clicks", 0), timeout=10)
    assert (low, high) == (0, max(o for p, o, _, _ in first if p == 0) + 1)
    found = consumer.offsets_for_times([TopicPartition("clicks", 0, 0)], timeout=10)[0]
    assert found.offset == 0 and found.error is None

    # A produces more; replication delivers the manifest before some segments: the replica
    # serves up to the last complete segment and never errors, then catches up.
    second = produce(a, "clicks", 2000, 2, first=2000)
    wait_for(lambda: fully_archived(a, "clicks"), timeout=60, what="A archived the rest")
    held = copy_bucket(s3, bucket_a, bucket_b, keep=lambda k: not (k.endswith(".log") and "/1/segments/" in k and k.rsplit("/", 1)[1] >= "%020d" % 1000))
    assert held, "some partition-1 segments held back"
    end_0 = max(o for p, o, _, _ in first + second if p == 0) + 1
    wait_for(lambda: consumer.get_watermark_offsets(TopicPartition("clicks", 0), timeout=10)[1] == end_0, timeout=30, what="replica partition 0 caught up")
    low1, high1 = consumer.get_watermark_offsets(TopicPartition("clicks", 1), timeout=10)
    assert high1 <= 1000, "partition 1 serves only what replicated"
    partial = confluent_read(b.bootstrap, "clicks", [1], high1, start=0)
    assert [m.offset() for m in partial] == list(range(high1))
    # The DR route says how far behind: the offsets the source names that have not replicated.
    end_1 = max(o for p, o, _, _ in first + second if p == 1) + 1

    def replica_lags():
        (replica,) = admin_json(b, "/v1/read-replicas")["read_replicas"]
        assert (replica["topic"], replica["source"]) == ("clicks", bucket_b)
        return {p["partition"]: (p["following"]["source_next_offset"], p["following"]["served_next_offset"], p["following"]["lag_offsets"])
                for p in replica["partitions"]}, replica["lag_offsets"]

    lags = wait_for(lambda: (lambda got: got if got[0][1][0] == end_1 else None)(replica_lags()), timeout=30,
                    what="the replica seeing partition 1's source end")
    served_1 = consumer.get_watermark_offsets(TopicPartition("clicks", 1), timeout=10)[1]
    assert lags == ({0: (end_0, end_0, 0), 1: (end_1, served_1, end_1 - served_1)}, end_1 - served_1), lags
    assert metric(b, "silt_read_replica_lag_offsets", {"topic": "clicks", "partition": "1"}) == end_1 - served_1
    copy_bucket(s3, bucket_a, bucket_b)
    wait_for(lambda: consumer.get_watermark_offsets(TopicPartition("clicks", 1), timeout=10)[1] == end_1, timeout=30, what="replica partition 1 caught up")
    wait_for(lambda: replica_lags()[1] == 0, timeout=30, what="the replica's lag gone")
    consumer.close()
    assert read_all(b.bootstrap, "clicks", 2, len(first) + len(second)) == sorted(first + second)
    # The replica survives a restart of its cluster (it keeps nothing but its definition).
    b.restart()
    assert read_all(b.bootstrap, "clicks", 2, len(first) + len(second)) == sorted(first + second)

    # Produce is refused with a clear, non-retriable error.
    refused = silt_cli("topic", "produce", "clicks", "--brokers", b.bootstrap, input="x\n")
    assert refused.returncode != 0 and "read replica" in refused.stderr and "read-only" in refused.stderr, refused.stderr
    producer = Producer({"bootstrap.servers": b.bootstrap, "message.timeout.ms": 10000})
    errors = []
    producer.produce("clicks", b"nope", partition=0, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(15)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.TOPIC_EXCEPTION, errors


def partition_status(silt, topic, partition=0):
    status = admin_json(silt, "/v1/status")
    return next(t for t in status["topics"] if t["name"] == topic)["partitions"][partition]


def test_a_restored_cluster_and_the_original_never_both_write_a_manifest(silt_factory, s3):
    # A fail-over gone wrong: the original comes back while the restored cluster writes the
    # same bucket. The conditional manifest writes let exactly one of them go on archiving.
    bucket = make_bucket(s3, "shared")
    a = cluster(silt_factory, s3, "a", bucket)
    create_topic(a.bootstrap, "ledger", partitions=1, config=TOPIC_CONFIG)
    before = produce(a, "ledger", 500, 1)
    wait_for(lambda: fully_archived(a, "ledger"), timeout=60, what="A archived everything")
    b = cluster(silt_factory, s3, "b", bucket)
    made = silt_cli("topic", "create", "ledger", "--recover", "--brokers", b.bootstrap, env=s3.env)
    assert made.returncode == 0, made.stdout + made.stderr

    # Both take writes at the same offsets: two histories that must not both reach the bucket.
    produce(a, "ledger", 300, 1, first=500)
    produce(b, "ledger", 300, 1, first=5000)

    def settled():
        fenced = [(partition_status(c, "ledger")["archive"] or {}).get("fenced") for c in (a, b)]
        return fenced.count(True) == 1 and fenced

    fenced = wait_for(settled, timeout=60, what="one cluster fenced")
    winner, loser = (b, a) if fenced[0] else (a, b)
    wait_for(lambda: fully_archived(winner, "ledger"), timeout=60, what="the winner archived its writes")
    # The loser keeps its unarchived data locally and says why it stopped.
    assert partition_status(loser, "ledger")["high_watermark"] == 800
    assert "fenced" in loser.log_text().lower()
    # The bucket holds one consistent history: the winner's.
    verified = silt_cli("archive", "--archive", f"s3://{bucket}/{PREFIX}", "verify", "ledger", env=s3.env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    restored = read_all(winner.bootstrap, "ledger", 1, 800)
    assert restored[:500] == sorted(before)
    assert {v.split(b"-")[1] for _, o, _, v in restored[500:]} == {b"%d" % i for i in range(*((500, 800) if winner is a else (5000, 5300)))}


def test_a_three_node_cluster_restores_a_bucket_into_replicated_partitions(silt_factory, cluster_factory, s3):
    """Whole-cluster restore onto a replicated cluster: the partitions come back with the
    target's replication factor, serve every archived record, and survive the loss of a
    leader (the next leader archives on from the bucket, which stays whole)."""
    bucket_a, bucket_b = make_bucket(s3, "single"), make_bucket(s3, "replicated")
    a = cluster(silt_factory, s3, "a", bucket_a)
    create_topic(a.bootstrap, "orders", partitions=2, config=TOPIC_CONFIG)
    orders = produce(a, "orders", 2000, 2)
    wait_for(lambda: fully_archived(a, "orders"), timeout=60, what="A archived everything")
    a.stop()
    copy_bucket(s3, bucket_a, bucket_b)

    b = cluster_factory(3, extra_args=["--archive", f"s3://{bucket_b}/{PREFIX}", *FAST], name="b", env=s3.env)
    restored = silt_cli("cluster", "restore", "--from", f"s3://{bucket_b}/{PREFIX}", "--brokers", b.bootstrap, env=s3.env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "restored 1 topics" in restored.stdout, restored.stdout
    from test_cluster_ops import replicas_of
    assert replicas_of(b.bootstrap, "orders") == {0: [0, 1, 2], 1: [0, 1, 2]}
    b.wait_in_sync("orders", [0, 1])
    assert read_all(b.bootstrap, "orders", 2, len(orders)) == sorted(orders)

    # The leader of partition 0 dies; writes go on, and the next leader archives them.
    more = produce(b, "orders", 200, 2, first=2000)
    victim = b.leader("orders", 0)
    b.nodes[victim].kill()
    more += produce(b, "orders", 200, 2, first=2200)
    # (The log of a replicated partition ends with control entries, the archive pointer's
    # among them, which the archive does not wait for: compare with the last record.)
    last = {p: max(o for q, o, _, _ in more if q == p) + 1 for p in (0, 1)}

    def archived_past_last():
        done = []
        for p in (0, 1):
            leader = b.nodes[b.leader("orders", p)]
            parts = next(t for t in admin_json(leader, "/v1/status")["topics"] if t["name"] == "orders")["partitions"]
            archive = next(q for q in parts if q["partition"] == p)["archive"] or {}
            done.append((archive.get("archived_next_offset") or 0) >= last[p])
        return all(done)
    wait_for(archived_past_last, timeout=90, what="the next leaders to archive the new writes")
    b.nodes[victim].start()
    b.wait_in_sync("orders", [0, 1], timeout=90)

    # The archive the replicated cluster wrote is whole.
    verified = silt_cli("archive", "--archive", f"s3://{bucket_b}/{PREFIX}", "verify", "orders", env=s3.env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert read_all(b.bootstrap, "orders", 2, len(orders) + len(more)) == sorted(orders + more)


def test_restored_partitions_continue_after_the_archived_leader_epochs(silt_factory, cluster_factory, s3):
    """A topic written by a replicated cluster through several leader epochs, restored into
    a single node and into a three-node cluster: records written after the restore carry an
    epoch above every archived one (clients never see epochs go back), and OffsetForLeaderEpoch
    answers for the archived epochs from what the archive recorded."""
    import urllib.request
    from wire import offset_for_leader_epoch

    origin_bucket = make_bucket(s3, "epochs")
    a = cluster_factory(3, extra_args=["--archive", f"s3://{origin_bucket}/{PREFIX}", *FAST], name="a", env=s3.env)
    create_topic(a.bootstrap, "ledger", partitions=1, config=TOPIC_CONFIG, replication_factor=3)
    written = produce(a, "ledger", 200, 1)
    for _ in range(2):
        leader = a.leader("ledger", 0)
        to = (leader + 1) % 3
        request = urllib.request.Request(
            f"{a.nodes[leader].admin}/v1/partitions/ledger/0/transfer_leadership",
            data=json.dumps({"to": to}).encode(), method="POST", headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.status == 200
        wait_for(lambda: a.leader("ledger", 0) == to, timeout=30, what=f"node {to} to lead")
        written += produce(a, "ledger", 200, 1, first=len(written))
    last = max(o for _, o, _, _ in written)

    def archived_past_last():
        leader = a.nodes[a.leader("ledger", 0)]
        archive = partition_status(leader, "ledger")["archive"] or {}
        return (archive.get("archived_next_offset") or 0) > last
    wait_for(archived_past_last, timeout=60, what="A archived every record")
    origin = confluent_read(a.bootstrap, "ledger", [0], len(written), start=0)
    epochs_at = [(m.offset(), m.leader_epoch()) for m in origin]
    a.stop()
    # Offsets where each archived epoch was last and next seen by a consumer.
    seen = {}
    for offset, epoch in epochs_at:
        first, _ = seen.get(epoch, (offset, offset))
        seen[epoch] = (first, offset)
    archived_epochs = sorted(seen)
    assert len(archived_epochs) >= 3, f"leader changes left epochs {archived_epochs}"

    def check(target, leader_bootstrap):
        more = produce(target, "ledger", 20, 1, first=10_000)
        got = confluent_read(target.bootstrap, "ledger", [0], len(written) + len(more), start=0)
        assert [(m.offset(), m.leader_epoch()) for m in got[:len(written)]] == epochs_at
        new_epochs = {m.leader_epoch() for m in got[len(written):]}
        assert min(new_epochs) > archived_epochs[-1], (new_epochs, archived_epochs)
        for older, newer in zip(archived_epochs, archived_epochs[1:]):
            error, epoch, end = offset_for_leader_epoch(leader_bootstrap(), "ledger", 0, older)
            assert (error, epoch) == (0, older)
            # The epoch ends after its last record and at or before the next epoch's first
            # (a control batch the consumer does not see may lie between).
            assert seen[older][1] < end <= seen[newer][0], (older, end, seen)
        error, epoch, end = offset_for_leader_epoch(leader_bootstrap(), "ledger", 0, archived_epochs[-1])
        assert (error, epoch) == (0, archived_epochs[-1])
        assert seen[archived_epochs[-1]][1] < end <= got[len(written)].offset()

    # A read replica serves the records in their own epochs, and answers for each of them.
    source, own = make_bucket(s3, "epochs-source"), make_bucket(s3, "epochs-reader")
    copy_bucket(s3, origin_bucket, source)
    # (On a three-node cluster: the replica's partitions are placed like any, on three nodes.)
    r = cluster_factory(3, extra_args=["--archive", f"s3://{own}/{PREFIX}", *FAST], name="r", env=s3.env)
    made = silt_cli("topic", "create", "ledger", "--read-replica", source, "--brokers", r.bootstrap, env=s3.env)
    assert made.returncode == 0, made.stdout + made.stderr
    from test_cluster_ops import replicas_of
    assert sorted(replicas_of(r.bootstrap, "ledger")[0]) == [0, 1, 2]
    got = confluent_read(r.bootstrap, "ledger", [0], len(written), start=0)
    assert [(m.offset(), m.leader_epoch()) for m in got] == epochs_at
    # (Every replica of a read replica's partition serves it: the archive is the data.)
    serving = r.nodes[0].bootstrap
    for older, newer in zip(archived_epochs, archived_epochs[1:]):
        error, epoch, end = wait_for(lambda: (lambda a: a if a[1] >= 0 else None)(offset_for_leader_epoch(serving, "ledger", 0, older)),
                                     timeout=30, what=f"the replica to know epoch {older}")
        assert (error, epoch) == (0, older) and seen[older][1] < end <= seen[newer][0], (older, end, seen)
    # The newest ends where the replica serves up to.
    error, epoch, end = offset_for_leader_epoch(serving, "ledger", 0, archived_epochs[-1])
    assert (error, epoch) == (0, archived_epochs[-1]) and end > last, (error, epoch, end)
    # A node serving it fails: the others serve the same records.
    r.nodes[0].kill()
    got = confluent_read(r.bootstrap, "ledger", [0], len(written), start=0)
    assert [(m.offset(), m.leader_epoch()) for m in got] == epochs_at
    r.stop()

    # Into a single node: its one epoch is the archive's newest plus one.
    single = make_bucket(s3, "epochs-single")
    copy_bucket(s3, origin_bucket, single)
    b = cluster(silt_factory, s3, "b", single)
    made = silt_cli("topic", "create", "ledger", "--recover", "--brokers", b.bootstrap, env=s3.env)
    assert made.returncode == 0, made.stdout + made.stderr
    check(b, lambda: b.bootstrap)
    b.stop()

    # Into three nodes: their first election is in the epoch after the archive's newest.
    replicated = make_bucket(s3, "epochs-replicated")
    copy_bucket(s3, origin_bucket, replicated)
    c = cluster_factory(3, extra_args=["--archive", f"s3://{replicated}/{PREFIX}", *FAST], name="c", env=s3.env)
    made = silt_cli("cluster", "restore", "--from", f"s3://{replicated}/{PREFIX}", "--brokers", c.bootstrap, env=s3.env)
    assert made.returncode == 0, made.stdout + made.stderr
    c.wait_in_sync("ledger", [0])
    check(c, lambda: c.nodes[c.leader("ledger", 0)].bootstrap)


def test_the_original_returning_after_a_fail_over_to_a_replicated_cluster_is_fenced(silt_factory, cluster_factory, s3):
    """A single node fails; a three-node cluster recovers its topic from the same bucket
    (replicated partitions) and writes on. When the original comes back it must not take the
    new cluster's archive for its own: it is fenced as it loads the manifest, its writes stay
    local, and the bucket holds one history, readable whole from the new cluster."""
    bucket = make_bucket(s3, "failover")
    a = cluster(silt_factory, s3, "a", bucket)
    create_topic(a.bootstrap, "ledger", partitions=1, config=TOPIC_CONFIG)
    before = produce(a, "ledger", 500, 1)
    wait_for(lambda: fully_archived(a, "ledger"), timeout=60, what="A archived everything")
    a.stop()

    b = cluster_factory(3, extra_args=["--archive", f"s3://{bucket}/{PREFIX}", *FAST], name="b", env=s3.env)
    made = silt_cli("topic", "create", "ledger", "--recover", "--brokers", b.bootstrap, env=s3.env)
    assert made.returncode == 0, made.stdout + made.stderr
    b.wait_in_sync("ledger", [0])
    after = produce(b, "ledger", 300, 1, first=5000)
    last = max(o for _, o, _, _ in after)

    def b_archived_past_last():
        archive = partition_status(b.nodes[b.leader("ledger", 0)], "ledger")["archive"] or {}
        return (archive.get("archived_next_offset") or 0) > last
    wait_for(b_archived_past_last, timeout=60, what="B archived its writes")

    # The original returns, takes writes of its own, and is fenced instead of adopting B's root.
    a.start()
    stray = produce(a, "ledger", 100, 1, first=9000)
    wait_for(lambda: (partition_status(a, "ledger")["archive"] or {}).get("fenced"), timeout=60, what="A fenced")
    assert "another cluster archived this partition" in a.log_text()
    # A still serves its own records from its disk, not B's from the bucket.
    mine = read_all(a.bootstrap, "ledger", 1, len(before) + len(stray))
    assert mine == sorted(before + stray)

    verified = silt_cli("archive", "--archive", f"s3://{bucket}/{PREFIX}", "verify", "ledger", env=s3.env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert read_all(b.bootstrap, "ledger", 1, len(before) + len(after)) == sorted(before + after)
