"""Client helpers shared by the tests: produce and read back with each client library."""

import subprocess
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ONE_MIB = 1024 * 1024


def create_topic(bootstrap, name, partitions=1, config=None, replication_factor=1):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=replication_factor, config=config or {})])
    futures[name].result(30)


def confluent_produce(bootstrap, topic, records, **conf):
    """Produces (partition, key, value, headers, timestamp) tuples with librdkafka; returns
    the delivered (partition, offset) of each, in order."""
    delivered = [None] * len(records)
    errors = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **conf})

    def report(index):
        def on_delivery(err, msg):
            if err is not None:
                errors.append(err)
            else:
                delivered[index] = (msg.partition(), msg.offset())
        return on_delivery

    for index, (partition, key, value, headers, timestamp) in enumerate(records):
        kwargs = {"key": key, "value": value, "headers": headers, "on_delivery": report(index)}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} messages not delivered"
    assert not errors, errors
    return delivered


def confluent_read(bootstrap, topic, partitions, count, start=0, timeout=60, **conf):
    """Reads `count` messages from the given partitions (assign, no group) with librdkafka."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "silt-tests-unused",
        "enable.auto.commit": False,
        "fetch.message.max.bytes": 2 * ONE_MIB,
        **conf,
    })
    consumer.assign([TopicPartition(topic, p, start) for p in partitions])
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"read {len(messages)} of {count} messages in {timeout}s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            messages.append(msg)
    finally:
        consumer.close()
    return messages


def as_tuple(msg):
    """(partition, offset, key, value, headers) of a librdkafka message."""
    return (msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers())


def kafka_python_read(bootstrap, topic, partitions, count, timeout=60):
    """Reads `count` messages with kafka-python (pure Python)."""
    from kafka import KafkaConsumer, TopicPartition as KTP

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * ONE_MIB,
        fetch_max_bytes=8 * ONE_MIB,
    )
    tps = [KTP(topic, p) for p in partitions]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"kafka-python read {len(messages)} of {count} in {timeout}s")
            for records in consumer.poll(timeout_ms=500).values():
                messages.extend(records)
    finally:
        consumer.close()
    return messages


def kcat(bootstrap, *args, input=None, timeout=60):
    """Runs kcat (Debian's, linking librdkafka 2.0.2) and returns its stdout as bytes."""
    result = subprocess.run(
        ["kcat", "-b", bootstrap, *args], input=input, capture_output=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(f"kcat {args} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout
