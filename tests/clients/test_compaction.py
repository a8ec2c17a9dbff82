"""Compacted topics (issue #13) with real clients: the newest value of every key, hot and from
the archive, tombstones, policies and configs, a table rebuilt by a consumer group, and a
broker killed while it compacts."""

import random
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from conftest import admin_json, metric, silt_cli, wait_for
from helpers import confluent_produce, create_topic

FAST = [
    "--set", "archive_check_interval_ms=200",
    "--set", "archive_upload_interval_ms=500",
    "--set", "retention_check_interval_ms=200",
    "--set", "compaction_check_interval_ms=200",
    "--set", "archive_compaction_grace_ms=500",
]


def partition_status(silt, topic, index=0):
    status = admin_json(silt, "/v1/status")
    return next(t for t in status["topics"] if t["name"] == topic)["partitions"][index]


def changelog(keys, rounds, value_bytes=100, deleted=()):
    """Records of `rounds` updates to each of `keys` keys; keys in `deleted` get a tombstone
    in the last round."""
    records = []
    for round_ in range(rounds):
        for k in range(keys):
            key = b"k%d" % k
            last = round_ == rounds - 1
            value = None if last and k in deleted else b"%d@%d:" % (k, round_) + b"v" * value_bytes
            records.append((0, key, value, None, None))
    return records


def expected_table(records, delivered):
    """key -> (offset, value) of each key's newest record."""
    table = {}
    for (_, key, value, _, _), (_, offset) in zip(records, delivered):
        table[key] = (offset, value)
    return table


def read_to_end(bootstrap, topic, start=0, **conf):
    """Every message of partition 0 from `start` to the end: [(offset, key, value)]."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "compaction-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        **conf,
    })
    consumer.assign([TopicPartition(topic, 0, start)])
    out = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise KafkaException(msg.error())
            out.append((msg.offset(), msg.key(), msg.value()))
    finally:
        consumer.close()
    raise AssertionError(f"no end of partition within 60 s ({len(out)} read)")


def assert_compacted(messages, table, produced_at):
    """Each key's newest record is there at its offset; every record there was produced at
    that offset; offsets increase."""
    offsets = [m[0] for m in messages]
    assert offsets == sorted(set(offsets)), "offsets only increase"
    by_offset = {offset: (key, value) for offset, key, value in messages}
    for key, (offset, value) in table.items():
        if value is not None:
            assert by_offset.get(offset) == (key, value), f"{key} at {offset}"
    for offset, (key, value) in by_offset.items():
        assert produced_at.get(offset) == (key, value), f"offset {offset} holds what was produced there"


def produced_by_offset(records, delivered):
    return {offset: (key, value) for (_, key, value, _, _), (_, offset) in zip(records, delivered)}


def test_a_changelog_reads_newest_per_key_hot_and_from_the_archive(silt_factory, s3):
    silt = silt_factory(extra_args=["--archive", s3.url(), *FAST], env=s3.env)
    create_topic(silt.bootstrap, "changelog", config={
        "cleanup.policy": "compact", "segment.bytes": "16384", "min.cleanable.dirty.ratio": "0.01",
    })
    records = changelog(300, 10)
    delivered = confluent_produce(silt.bootstrap, "changelog", records)
    table = expected_table(records, delivered)
    produced_at = produced_by_offset(records, delivered)
    end = delivered[-1][1] + 1

    def compacted_everywhere():
        p = partition_status(silt, "changelog")
        return (p["high_watermark"] == end and p["compaction"]["cleaned_to"] >= end
                and p["archive"]["compacted_to"] >= end)
    wait_for(compacted_everywhere, timeout=120, what="local log and archive compacted to the end")

    hot = read_to_end(silt.bootstrap, "changelog")
    assert_compacted(hot, table, produced_at)
    assert len(hot) == len(table), "exactly one record per key once compacted"
    assert metric(silt, "silt_partition_compaction_reclaimed_bytes", {"topic": "changelog", "partition": "0"}) > 0
    assert metric(silt, "silt_archive_compaction_passes_total") >= 1

    # Local retention takes the local copies: reads from 0 now come from the archive.
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, "changelog", incremental_configs=[
        ConfigEntry("retention.local.target.bytes", "1", incremental_operation=AlterConfigOpType.SET),
    ])
    list(admin.incremental_alter_configs([resource]).values())[0].result(30)
    wait_for(lambda: partition_status(silt, "changelog")["local_start_offset"] > 0, timeout=60,
             what="local segments deleted once archived")
    cold = read_to_end(silt.bootstrap, "changelog")
    assert_compacted(cold, table, produced_at)
    assert len(cold) == len(table), "the archive is compacted too"

    # The bucket holds about the live keys, not the history, once the grace period is over.
    produced_bytes = sum(len(r[1]) + len(r[2] or b"") for r in records)

    def bucket_bytes():
        keys = s3.client.list_objects_v2(Bucket=s3.bucket).get("Contents", [])
        return sum(o["Size"] for o in keys if o["Key"].endswith(".log"))
    wait_for(lambda: bucket_bytes() * 5 < produced_bytes, timeout=60, what="replaced objects deleted")
    verify = silt_cli("archive", "verify", "--archive", s3.url(), env=s3.env)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_policies_configs_and_records_without_keys(silt):
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    # The list forms clients send, and Kafka's deprecated configs, are accepted.
    admin.create_topics([NewTopic("both", 1, 1, config={
        "cleanup.policy": "[compact, delete]",
        "message.format.version": "2.8-IV1",
        "message.downconversion.enable": "true",
    })])["both"].result(30)
    configs = list(admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "both")]).values())[0].result(30)
    assert configs["cleanup.policy"].value == "compact,delete"
    assert configs["message.format.version"].value == "2.8-IV1"
    with pytest.raises(KafkaException) as excinfo:
        admin.create_topics([NewTopic("typo", 1, 1, config={
            "message.format.version": "2.8", "cleanup.polcy": "compact"})])["typo"].result(30)
    assert excinfo.value.args[0].name() == "INVALID_CONFIG"
    assert "cleanup.polcy" in str(excinfo.value), "the unknown name is named"

    # A record without a key has no place in a compacted topic: INVALID_RECORD, nothing kept.
    create_topic(silt.bootstrap, "table", config={"cleanup.policy": "compact"})
    producer = Producer({"bootstrap.servers": silt.bootstrap, "acks": "all", "retries": 0})
    errors = []
    producer.produce("table", value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(30)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD, errors
    from kafka import KafkaProducer
    from kafka.errors import InvalidRecordError
    kp = KafkaProducer(bootstrap_servers=silt.bootstrap, retries=0)
    with pytest.raises(InvalidRecordError):
        kp.send("table", value=b"no key either").get(timeout=30)
    kp.close()
    assert partition_status(silt, "table")["high_watermark"] == 0

    # Switched to delete, keyless records go in; switched back (APPEND, as Kafka's tools do).
    def alter(op, value):
        resource = ConfigResource(ConfigResource.Type.TOPIC, "table", incremental_configs=[
            ConfigEntry("cleanup.policy", value, incremental_operation=op)])
        list(admin.incremental_alter_configs([resource]).values())[0].result(30)

    alter(AlterConfigOpType.SET, "delete")
    confluent_produce(silt.bootstrap, "table", [(0, None, b"keyless", None, None)])
    alter(AlterConfigOpType.APPEND, "compact")
    configs = list(admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "table")]).values())[0].result(30)
    assert configs["cleanup.policy"].value == "compact,delete"
    errors.clear()
    producer.produce("table", value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(30)
    assert errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD


def test_tombstones_go_after_delete_retention(silt_factory):
    silt = silt_factory(extra_args=FAST)
    create_topic(silt.bootstrap, "people", config={
        "cleanup.policy": "compact", "segment.bytes": "4096", "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "1000",
    })
    records = changelog(20, 5, deleted=range(0, 20, 2))
    delivered = confluent_produce(silt.bootstrap, "people", records)
    table = expected_table(records, delivered)
    produced_at = produced_by_offset(records, delivered)
    live = {k: v for k, v in table.items() if v[1] is not None}

    def only_live_keys():
        messages = read_to_end(silt.bootstrap, "people")
        return messages if {m[1] for m in messages} == set(live) else None
    messages = wait_for(only_live_keys, timeout=60, interval=0.5, what="tombstoned keys gone")
    assert_compacted(messages, table, produced_at)
    assert all(value is not None for _, _, value in messages)

    # `silt topic describe` shows where compaction stands.
    described = silt_cli("topic", "describe", "people", "--brokers", silt.bootstrap,
                         "--admin", silt.admin.removeprefix("http://"))
    assert described.returncode == 0, described.stderr
    assert "COMPACTION" in described.stdout and "RECLAIMED-BYTES" in described.stdout, described.stdout
    row = described.stdout.split("ARCHIVE-COMPACTED-TO")[1].split()
    assert int(row[0]) == 0 and int(row[1]) == delivered[-1][1] + 1, described.stdout


def test_a_group_rebuilds_the_table_after_a_broker_killed_while_compacting(silt_factory):
    silt = silt_factory(extra_args=FAST)
    create_topic(silt.bootstrap, "state", config={
        "cleanup.policy": "compact", "segment.bytes": "65536", "min.cleanable.dirty.ratio": "0.01",
    })
    records = changelog(1000, 12, value_bytes=200, deleted=range(0, 1000, 7))
    random.Random(13).shuffle(records)
    delivered = confluent_produce(silt.bootstrap, "state", records, **{"linger.ms": 20})
    table = expected_table(records, delivered)
    produced_at = produced_by_offset(records, delivered)
    end = delivered[-1][1] + 1

    # Killed (SIGKILL) as soon as the compactor has read something, three times over.
    for _ in range(3):
        before = metric(silt, "silt_compaction_read_bytes_total") or 0
        wait_for(lambda: (metric(silt, "silt_compaction_read_bytes_total") or 0) > before
                 or partition_status(silt, "state")["compaction"]["cleaned_to"] >= end,
                 timeout=60, what="the compactor at work")
        silt.restart(hard=True)
        assert_compacted(read_to_end(silt.bootstrap, "state"), table, produced_at)

    wait_for(lambda: partition_status(silt, "state")["compaction"]["cleaned_to"] >= end, timeout=120,
             what="compaction finished after the kills")
    silt.restart()
    # A consumer group (as Kafka Streams restores a store) rebuilds the table from the start.
    consumer = Consumer({
        "bootstrap.servers": silt.bootstrap, "group.id": "rebuild", "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    })
    consumer.subscribe(["state"])
    rebuilt = {}
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    break
                raise KafkaException(msg.error())
            if msg.value() is None:
                rebuilt.pop(msg.key(), None)
            else:
                rebuilt[msg.key()] = msg.value()
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert rebuilt == {k: v for k, (_, v) in table.items() if v is not None}
    status = partition_status(silt, "state")["compaction"]
    assert status["cleaned_to"] >= end and status["dirty_ratio"] < 0.5, status


def test_a_replicated_compacted_topic_with_a_lagging_follower_and_a_leader_kill(cluster_factory):
    """Each replica compacts its own log, whose batches are its Raft entries: a follower that was
    down while the leader compacted catches up from the compacted entries (no archive here, so
    no snapshot can stand in for them), and after the leader is killed the new one serves every
    key's newest record at its offset."""
    cluster = cluster_factory(extra_args=FAST)
    create_topic(cluster.bootstrap, "rtable", replication_factor=3, config={
        "cleanup.policy": "compact", "segment.bytes": "4096", "min.cleanable.dirty.ratio": "0.01",
        "remote.storage.enable": "false",
    })
    cluster.wait_in_sync("rtable", [0])
    leader = cluster.leader("rtable", 0)
    lagging = next(i for i in range(3) if i != leader)
    cluster.nodes[lagging].kill()
    records = changelog(200, 10)
    # A round at a time, so each round is its own batches and segments (one huge batch would
    # sit whole in the active segment, which is never compacted).
    delivered = []
    for r in range(10):
        delivered += confluent_produce(cluster.bootstrap, "rtable", records[r * 200:(r + 1) * 200])
    table = expected_table(records, delivered)
    produced_at = produced_by_offset(records, delivered)
    end = delivered[-1][1] + 1

    # The last batch stays in the active segment (never compacted; no archive rolls it here).
    def compacted_on(node):
        return partition_status(cluster.nodes[node], "rtable")["compaction"]["bytes_reclaimed"] > 0
    wait_for(lambda: compacted_on(leader), timeout=120, what="the leader compacted")
    cluster.nodes[lagging].start()
    cluster.wait_in_sync("rtable", [0])
    wait_for(lambda: partition_status(cluster.nodes[lagging], "rtable")["high_watermark"] >= end, timeout=60,
             what="the follower caught up")
    caught_up = partition_status(cluster.nodes[lagging], "rtable")
    assert caught_up["local_start_offset"] == 0, "it was sent the entries, not a snapshot"
    cluster.nodes[leader].kill()
    messages = read_to_end(cluster.bootstrap, "rtable")
    assert_compacted(messages, table, produced_at)
    assert len(messages) < len(records) / 2, "what the new leader serves is compacted"
