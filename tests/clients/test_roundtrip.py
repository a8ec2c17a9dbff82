"""Round trips through silt with each client: keys, headers (duplicates kept), null and empty
keys and values, and 1 MiB values, read back byte for byte by another client."""

import base64
import random

from conftest import run_node
from helpers import (
    ONE_MIB,
    as_tuple,
    confluent_produce,
    confluent_read,
    create_topic,
    kafka_python_read,
    kcat,
)

BIG_TOPIC_CONFIG = {"max.message.bytes": str(3 * ONE_MIB)}


def sample_records():
    rng = random.Random(7)
    big = rng.randbytes(ONE_MIB)
    return [
        (0, b"key-1", b"value-1", [("h1", b"a"), ("h1", b"b"), ("h2", None)], None),
        (0, None, b"no key", None, None),
        (0, b"no value", None, None, None),
        (0, b"", b"", [("empty", b"")], None),
        (0, None, None, None, None),
        (0, b"big", big, [("size", b"1MiB")], None),
        (0, bytes(range(256)), bytes(range(255, -1, -1)), None, None),
    ]


def expected(records):
    return [(key, value, headers or None) for (_, key, value, headers, _) in records]


def test_librdkafka_round_trip_read_by_kafka_python(silt):
    create_topic(silt.bootstrap, "rt", config=BIG_TOPIC_CONFIG)
    records = sample_records()
    delivered = confluent_produce(silt.bootstrap, "rt", records, **{"message.max.bytes": 3 * ONE_MIB})
    assert [offset for _, offset in delivered] == list(range(len(records)))

    got = [as_tuple(m) for m in confluent_read(silt.bootstrap, "rt", [0], len(records))]
    assert [(k, v, h) for (_, _, k, v, h) in got] == expected(records)
    assert [o for (_, o, _, _, _) in got] == list(range(len(records)))

    # kafka-python decodes the same bytes independently.
    kp = kafka_python_read(silt.bootstrap, "rt", [0], len(records))
    for msg, (_, key, value, headers, _) in zip(kp, records):
        assert (msg.key, msg.value) == (key, value)
        assert [(k, v) for k, v in msg.headers] == (headers or [])


def test_kafka_python_round_trip_read_by_librdkafka(silt):
    from kafka import KafkaProducer

    create_topic(silt.bootstrap, "kp", config=BIG_TOPIC_CONFIG)
    # kafka-python refuses a record with neither key nor value, and null header values.
    records = [(p, k, v, [(n, x) for n, x in (h or []) if x is not None] or None, t)
               for (p, k, v, h, t) in sample_records() if k is not None or v is not None]
    producer = KafkaProducer(bootstrap_servers=silt.bootstrap, acks="all", max_request_size=3 * ONE_MIB)
    for (_, key, value, headers, _) in records:
        producer.send("kp", key=key, value=value, headers=headers or [], partition=0)
    producer.flush(60)
    producer.close()
    got = [as_tuple(m) for m in confluent_read(silt.bootstrap, "kp", [0], len(records))]
    assert [(k, v, h) for (_, _, k, v, h) in got] == expected(records)


def test_kafkajs_round_trip_read_by_librdkafka(silt):
    create_topic(silt.bootstrap, "js", config=BIG_TOPIC_CONFIG)
    # kafkajs has no null header values; everything else of the sample goes through it.
    records = [(p, k, v, [(n, x) for n, x in (h or []) if x is not None] or None, t)
               for (p, k, v, h, t) in sample_records()]
    b64 = lambda b: None if b is None else base64.b64encode(b).decode()
    out = run_node("produce.js", {
        "brokers": [silt.bootstrap],
        "topic": "js",
        "codec": "none",
        "messages": [
            {"partition": 0, "key": b64(k), "value": b64(v),
             "headers": [[name, b64(val)] for name, val in (h or [])]}
            for (_, k, v, h, _) in records
        ],
    })
    assert out["count"] == len(records)
    got = [as_tuple(m) for m in confluent_read(silt.bootstrap, "js", [0], len(records))]
    assert [(k, v, h) for (_, _, k, v, h) in got] == expected(records)


def test_kafkajs_admin_and_metadata(silt):
    out = run_node("admin.js", {"brokers": [silt.bootstrap], "topic": "js-admin"})
    assert out["created"] is True
    assert out["partitions"] == 3
    assert out["retention"] == "123456"
    assert "js-admin" in out["listed"]
    assert out["offsets"] == [{"partition": 0, "offset": "0", "high": "0", "low": "0"},
                              {"partition": 1, "offset": "0", "high": "0", "low": "0"},
                              {"partition": 2, "offset": "0", "high": "0", "low": "0"}]
    assert out["deleted"] is True


def test_kcat_round_trip(silt):
    create_topic(silt.bootstrap, "kc")
    lines = b"".join(b"k%d:value %d\n" % (i, i) for i in range(100))
    kcat(silt.bootstrap, "-P", "-t", "kc", "-p", "0", "-K:", "-H", "source=kcat", input=lines)
    out = kcat(silt.bootstrap, "-C", "-t", "kc", "-p", "0", "-o", "beginning", "-e", "-f", "%o|%k|%s|%h\n")
    rows = out.decode().splitlines()
    assert rows == [f"{i}|k{i}|value {i}|source=kcat" for i in range(100)]
    # And what librdkafka 2.16 reads is what kcat (librdkafka 2.0.2) wrote.
    got = confluent_read(silt.bootstrap, "kc", [0], 100)
    assert [m.value() for m in got] == [b"value %d" % i for i in range(100)]
