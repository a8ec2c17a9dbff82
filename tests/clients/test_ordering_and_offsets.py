"""Ordering over many partitions, offsets for times, and seeks."""

import time

from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaConsumer, TopicPartition as KTP

from helpers import confluent_produce, confluent_read, create_topic

PARTITIONS = 6
PER_PARTITION = 10_000


def test_six_partitions_of_ten_thousand_keep_their_order(silt):
    create_topic(silt.bootstrap, "ordered", partitions=PARTITIONS)
    records = [
        (p, b"p%d" % p, b"%d:%d" % (p, i), None, None)
        for i in range(PER_PARTITION)
        for p in range(PARTITIONS)
    ]
    delivered = confluent_produce(silt.bootstrap, "ordered", records, **{"linger.ms": 20, "batch.num.messages": 2000})
    # Offsets were assigned in send order within each partition.
    for p in range(PARTITIONS):
        offsets = [o for (part, o) in delivered if part == p]
        assert offsets == list(range(PER_PARTITION))
    got = confluent_read(silt.bootstrap, "ordered", list(range(PARTITIONS)), PARTITIONS * PER_PARTITION, timeout=120)
    by_partition = {p: [] for p in range(PARTITIONS)}
    for m in got:
        by_partition[m.partition()].append((m.offset(), m.value()))
    for p, seen in by_partition.items():
        assert seen == [(i, b"%d:%d" % (p, i)) for i in range(PER_PARTITION)], f"partition {p}"


def test_offsets_for_times_and_seeks_librdkafka(silt):
    create_topic(silt.bootstrap, "times", partitions=2)
    t0 = int(time.time() * 1000) - 3_600_000
    # Record i has timestamp t0 + 10*i, in both partitions.
    records = [(p, None, b"%d" % i, None, t0 + 10 * i) for p in range(2) for i in range(1000)]
    confluent_produce(silt.bootstrap, "times", records, **{"linger.ms": 50})
    consumer = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    try:
        for target, expected in [(t0, 0), (t0 + 5, 1), (t0 + 4990, 499), (t0 + 9990, 999)]:
            found = consumer.offsets_for_times([TopicPartition("times", p, target) for p in range(2)], 10)
            assert [tp.offset for tp in found] == [expected, expected], f"target t0+{target - t0}"
        past_end = consumer.offsets_for_times([TopicPartition("times", 0, t0 + 10_000)], 10)
        assert past_end[0].offset == -1, "no record at or after: offset -1 (the client's 'end')"
        low, high = consumer.get_watermark_offsets(TopicPartition("times", 1), 10)
        assert (low, high) == (0, 1000)
        # Seek into the middle, read on from there.
        consumer.assign([TopicPartition("times", 1, 0)])
        first = consumer.poll(10)
        assert first.offset() == 0
        consumer.seek(TopicPartition("times", 1, 777))
        after_seek = consumer.poll(10)
        while after_seek is not None and after_seek.offset() != 777:
            assert after_seek.offset() < 777, "records before the seek point may still arrive, never after"
            after_seek = consumer.poll(10)
        assert after_seek.value() == b"777"
        assert after_seek.timestamp()[1] == t0 + 7770
    finally:
        consumer.close()


def test_offsets_for_times_and_seeks_kafka_python(silt):
    create_topic(silt.bootstrap, "kp-times")
    t0 = int(time.time() * 1000) - 600_000
    confluent_produce(silt.bootstrap, "kp-times", [(0, None, b"%d" % i, None, t0 + 100 * i) for i in range(500)])
    consumer = KafkaConsumer(bootstrap_servers=silt.bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    tp = KTP("kp-times", 0)
    consumer.assign([tp])
    try:
        found = consumer.offsets_for_times({tp: t0 + 25_050})
        assert found[tp].offset == 251 and found[tp].timestamp == t0 + 25_100
        assert consumer.offsets_for_times({tp: t0 + 10**9})[tp] is None
        assert consumer.beginning_offsets([tp])[tp] == 0
        assert consumer.end_offsets([tp])[tp] == 500
        consumer.seek(tp, 400)
        values = [m.value for m in consumer]
        assert values == [b"%d" % i for i in range(400, 500)]
        consumer.seek_to_beginning(tp)
        assert next(consumer).offset == 0
    finally:
        consumer.close()
