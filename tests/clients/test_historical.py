"""Historical offsets through the archive, over the plain Kafka API, with every client.

Each test archives a topic to moto's S3 server (over HTTP, through a proxy that can cut it
off) with tiny segments and a 1 ms local retention, waits until the local log holds nothing
but an empty active segment, and then reads it back as a consumer would.
"""

import base64
import shutil
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from conftest import admin_json, metric, run_node, silt_cli, wait_for
from helpers import as_tuple, confluent_produce, confluent_read, create_topic, kafka_python_read, kcat

TIERED = [
    "--set", "archive_check_interval_ms=100",
    "--set", "archive_upload_interval_ms=500",
    "--set", "retention_check_interval_ms=100",
    # Small chunks: many GETs, chunk boundaries inside batches.
    "--set", "archive_chunk_bytes=65536",
]
TOPIC_CONFIG = {"segment.bytes": "65536", "retention.local.target.ms": "1"}
# Record timestamps an hour old: recent enough that total retention (7 days) keeps them.
T0 = int(time.time() * 1000) - 3_600_000


def partitions(silt, topic):
    status = admin_json(silt, "/v1/status")
    return next(t for t in status["topics"] if t["name"] == topic)["partitions"]


def only_in_the_archive(silt, topic):
    """Every record is archived and the local log holds none of them."""
    return all(
        p["archive"] and p["archive"]["archived_next_offset"] == p["high_watermark"] == p["local_start_offset"]
        for p in partitions(silt, topic)
    )


def tiered_silt(silt_factory, s3, *extra):
    return silt_factory(extra_args=["--archive", s3.url(), *TIERED, *extra], env=s3.env)


def produce_archived(silt, topic, count, partitions_count=2):
    """Produces `count` keyed records with headers and known timestamps; waits until the local
    log has handed all of them to the archive. Returns {partition: [(offset, key, value,
    headers, timestamp)]} as delivered."""
    create_topic(silt.bootstrap, topic, partitions=partitions_count, config=TOPIC_CONFIG)
    records = [
        (i % partitions_count, b"key-%d" % i, b"value-%d-" % i + bytes([i % 251]) * (i % 300), [("h", b"%d" % i), ("h", b"dup")], T0 + 10 * i)
        for i in range(count)
    ]
    delivered = confluent_produce(silt.bootstrap, topic, records, **{"linger.ms": 10})
    expected = {p: [] for p in range(partitions_count)}
    for (partition, key, value, headers, timestamp), (_, offset) in zip(records, delivered):
        expected[partition].append((offset, key, value, headers, timestamp))
    wait_for(lambda: only_in_the_archive(silt, topic), timeout=180, what="every record archived and gone from the local log")
    for p in partitions(silt, topic):
        assert p["local_segments"] == 1 and p["start_offset"] == 0, p
    return expected


def test_each_client_replays_the_archive_byte_identical(silt_factory, s3):
    silt = tiered_silt(silt_factory, s3)
    expected = produce_archived(silt, "history", 6000)
    total = sum(len(v) for v in expected.values())

    # librdkafka from offset 0: every message, in order, keys, values and headers identical.
    got = confluent_read(silt.bootstrap, "history", [0, 1], total, start=0)
    by_partition = {0: [], 1: []}
    for msg in got:
        partition, offset, key, value, headers = as_tuple(msg)
        by_partition[partition].append((offset, key, value, headers, msg.timestamp()[1]))
    for p in (0, 1):
        assert by_partition[p] == [(o, k, v, [(hk, hv) for hk, hv in h], ts) for o, k, v, h, ts in expected[p]]

    # kafka-python: seek_to_beginning asks ListOffsets for the earliest offset (the archive's).
    got = kafka_python_read(silt.bootstrap, "history", [0, 1], total)
    assert sorted((m.partition, m.offset, m.key, m.value) for m in got) == sorted(
        (p, o, k, v) for p, rows in expected.items() for o, k, v, _, _ in rows
    )

    # kcat (librdkafka 2.0.2) from the beginning to the end.
    out = kcat(silt.bootstrap, "-C", "-t", "history", "-p", "1", "-o", "beginning", "-e", "-f", "%o %k\n")
    assert out.decode().splitlines() == [f"{o} {k.decode()}" for o, k, _, _, _ in expected[1]]

    # kafkajs in a consumer group, fromBeginning (auto.offset.reset=earliest): everything.
    out = run_node("consume.js", {"brokers": [silt.bootstrap], "topic": "history", "groupId": "js-history", "count": total}, timeout=180)
    assert sorted(base64.b64decode(v) for v in out["values"]) == sorted(v for rows in expected.values() for _, _, v, _, _ in rows)
    assert out["committed"] == {str(p): str(len(rows)) for p, rows in expected.items()}

    # librdkafka in a consumer group with auto.offset.reset=earliest.
    consumer = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "rd-history", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["history"])
    seen = 0
    deadline = time.monotonic() + 120
    while seen < total and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            seen += 1
    consumer.close()
    assert seen == total

    # The reads came from the archive, through the cache, with GETs.
    assert metric(silt, "silt_archive_reads_total") > 0
    assert metric(silt, "silt_archive_chunk_gets_total") > 0
    assert metric(silt, "silt_archive_cache_hits_total") > 0
    assert metric(silt, "silt_archive_served_bytes_total") > 0
    assert metric(silt, "silt_archive_read_first_byte_seconds_count") > 0


def test_offsets_for_times_and_list_offsets_resolve_into_the_archive(silt_factory, s3):
    silt = tiered_silt(silt_factory, s3)
    expected = produce_archived(silt, "times", 3000)
    consumer = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "unused"})
    try:
        for p, rows in expected.items():
            low, high = consumer.get_watermark_offsets(TopicPartition("times", p), timeout=30)
            assert (low, high) == (0, len(rows))
            for target_index in (0, 1, len(rows) // 3, len(rows) - 1):
                target = rows[target_index][4] - 5  # between two records: the later one
                found = consumer.offsets_for_times([TopicPartition("times", p, target)], timeout=30)[0]
                want = next(o for o, _, _, _, ts in rows if ts >= target)
                assert found.offset == want, (p, target_index, found)
            beyond = consumer.offsets_for_times([TopicPartition("times", p, rows[-1][4] + 1)], timeout=30)[0]
            assert beyond.offset == -1  # no record that late: the end
    finally:
        consumer.close()

    # kafka-python's offsets_for_times, too.
    from kafka import KafkaConsumer, TopicPartition as KTP

    kp = KafkaConsumer(bootstrap_servers=silt.bootstrap)
    try:
        rows = expected[0]
        target = rows[100][4]
        found = kp.offsets_for_times({KTP("times", 0): target})[KTP("times", 0)]
        assert (found.offset, found.timestamp) == (rows[100][0], rows[100][4])
        assert kp.beginning_offsets([KTP("times", 0)])[KTP("times", 0)] == 0
    finally:
        kp.close()


def test_a_restart_with_an_empty_cache_still_serves_old_offsets(silt_factory, s3):
    silt = tiered_silt(silt_factory, s3)
    expected = produce_archived(silt, "cold", 2000, partitions_count=1)
    silt.stop()
    shutil.rmtree(silt.data_dir / "cache", ignore_errors=True)
    silt.start()
    got = confluent_read(silt.bootstrap, "cold", [0], len(expected[0]), start=0)
    assert [(m.offset(), m.value()) for m in got] == [(o, v) for o, _, v, _, _ in expected[0]]
    assert metric(silt, "silt_archive_cache_misses_total") > 0
    assert (silt.data_dir / "cache").is_dir()

    # And after a restart with a warm cache, a replay needs no GET of segment data at all.
    silt.restart()
    got = confluent_read(silt.bootstrap, "cold", [0], len(expected[0]), start=0)
    assert len(got) == len(expected[0])
    assert metric(silt, "silt_archive_chunk_gets_total") == 0
    assert metric(silt, "silt_archive_cache_hits_total") > 0


def test_delete_records_moves_the_start_in_the_archive_too(silt_factory, s3):
    from confluent_kafka import TopicPartition as TP

    silt = tiered_silt(silt_factory, s3)
    expected = produce_archived(silt, "trim", 3000, partitions_count=1)
    cut = 1234
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    result = admin.delete_records([TP("trim", 0, cut)])[TP("trim", 0)].result(30)
    assert result.low_watermark == cut
    consumer = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "trim-reader", "auto.offset.reset": "earliest"})
    try:
        assert consumer.get_watermark_offsets(TP("trim", 0), timeout=30)[0] == cut
    finally:
        consumer.close()
    # A consumer starting from the beginning starts at the new start.
    got = confluent_read(silt.bootstrap, "trim", [0], 10, start=-2)
    assert got[0].offset() == cut
    # The archive drops the segments wholly below it, and says where it starts.
    def archive_start():
        rows = [line.split() for line in silt_cli("archive", "ls", "trim", "--archive", s3.url(), env=s3.env).stdout.splitlines() if line.startswith("trim ")]
        return int(rows[0][3]) if rows else None
    wait_for(lambda: archive_start() == cut, timeout=60, what="the archive's start moved")
    # Survives a restart (the start is persisted).
    silt.restart()
    low, high = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "x"}).get_watermark_offsets(TP("trim", 0), timeout=30)
    assert (low, high) == (cut, len(expected[0]))


def test_remote_read_off_keeps_the_archive_out_of_reads(silt_factory, s3):
    silt = tiered_silt(silt_factory, s3)
    expected = produce_archived(silt, "private", 1000, partitions_count=1)
    end = len(expected[0])
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    resource = ConfigResource("topic", "private", set_config={"redpanda.remote.read": "false"})
    admin.alter_configs([resource])[resource].result(30)
    consumer = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "private-reader", "auto.offset.reset": "earliest"})
    try:
        # Only the local log counts now: it starts (and ends) at the end.
        assert consumer.get_watermark_offsets(TopicPartition("private", 0), timeout=30) == (end, end)
    finally:
        consumer.close()
    reads = metric(silt, "silt_archive_reads_total") or 0
    # Asking for offset 0 is out of range; with auto.offset.reset=earliest the consumer goes to
    # the local start and sees only what comes next.
    confluent_produce(silt.bootstrap, "private", [(0, None, b"after", None, None)])
    got = confluent_read(silt.bootstrap, "private", [0], 1, start=0, **{"auto.offset.reset": "earliest"})
    assert (got[0].offset(), got[0].value()) == (end, b"after")
    assert (metric(silt, "silt_archive_reads_total") or 0) == reads


def test_an_unreachable_bucket_is_a_retriable_error_and_the_consumer_resumes(silt_factory, s3):
    silt = tiered_silt(silt_factory, s3, "--set", "archive_read_timeout_ms=1500")
    expected = produce_archived(silt, "outage", 1500, partitions_count=1)
    s3.proxy.stop()
    # The client is told, within a bounded wait, with a retriable error (KAFKA_STORAGE_ERROR).
    started = time.monotonic()
    failed = silt_cli("topic", "consume", "outage", "--brokers", silt.bootstrap, "--offset", "start", "--num", "10", timeout=60)
    assert failed.returncode != 0
    assert "storage" in failed.stderr.lower(), failed.stderr
    assert time.monotonic() - started < 30
    assert metric(silt, "silt_archive_read_failures_total") > 0
    # Hot data still flows while the bucket is away.
    confluent_produce(silt.bootstrap, "outage", [(0, None, b"hot", None, None)])
    hot = confluent_read(silt.bootstrap, "outage", [0], 1, start=len(expected[0]))
    assert hot[0].value() == b"hot"

    # A librdkafka consumer started now keeps retrying; when the bucket is back it gets all.
    result = {}

    def read_all():
        try:
            result["got"] = confluent_read(silt.bootstrap, "outage", [0], len(expected[0]), start=0, timeout=120)
        except Exception as e:  # noqa: BLE001 - reported below
            result["error"] = e

    import threading

    reader = threading.Thread(target=read_all)
    reader.start()
    time.sleep(3)  # the consumer is fetching against a bucket that is away
    s3.proxy.start()
    reader.join(150)
    assert "error" not in result, result.get("error")
    assert [(m.offset(), m.value()) for m in result["got"]] == [(o, v) for o, _, v, _, _ in expected[0]]


def test_a_corrupted_archive_object_is_reported_and_never_served(silt_factory, s3):
    silt = tiered_silt(silt_factory, s3)
    expected = produce_archived(silt, "rot", 3000, partitions_count=1)
    keys = sorted(k for k in s3.keys("cluster-a/") if k.endswith(".log") and "/rot_" in k)
    victim = keys[len(keys) // 2]
    first_bad = int(victim.rsplit("/", 1)[1].split("-")[0])
    body = bytearray(s3.client.get_object(Bucket=s3.bucket, Key=victim)["Body"].read())
    body[len(body) // 2] ^= 0x10
    s3.client.put_object(Bucket=s3.bucket, Key=victim, Body=bytes(body))
    # Everything before the damaged batch is served intact; nothing from it on is served.
    consumer = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition("rot", 0, 0)])
    seen, errors = [], []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            errors.append(msg.error())
            continue
        seen.append((msg.offset(), msg.value()))
    consumer.close()
    assert seen == [(o, v) for o, _, v, _, _ in expected[0]][: len(seen)]
    assert first_bad <= len(seen) < len(expected[0]), (first_bad, len(seen))
    assert metric(silt, "silt_archive_corrupt_batches_total") > 0
    assert victim in silt.log_text(), "the log names the object"
    # Our own client shows the client's view: the partition answers CORRUPT_MESSAGE.
    failed = silt_cli("topic", "consume", "rot", "--brokers", silt.bootstrap, "--offset", "start", timeout=60)
    assert failed.returncode != 0 and "corrupt" in failed.stderr.lower(), failed.stderr
