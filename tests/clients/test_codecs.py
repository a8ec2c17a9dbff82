"""Every codec, written by one client and read back byte for byte by another. silt stores the
producer's compressed batches as they are; the reader decompresses."""

import base64
import random

import pytest
from kafka import KafkaProducer

from conftest import run_node
from helpers import confluent_produce, confluent_read, create_topic, kafka_python_read, kcat

CODECS = ["gzip", "snappy", "lz4", "zstd"]


def payloads(n, seed):
    rng = random.Random(seed)
    # Compressible and incompressible values, so every codec does real work.
    return [
        (b"key-%d" % i, (b"text %d " % i) * rng.randint(1, 40) if i % 2 else rng.randbytes(rng.randint(0, 2000)))
        for i in range(n)
    ]


@pytest.mark.parametrize("codec", CODECS)
def test_librdkafka_writes_kafka_python_and_kcat_read(silt, codec):
    topic = f"c-{codec}"
    create_topic(silt.bootstrap, topic)
    data = payloads(500, codec)
    confluent_produce(silt.bootstrap, topic, [(0, k, v, None, None) for k, v in data], **{"compression.type": codec})
    got = kafka_python_read(silt.bootstrap, topic, [0], len(data))
    assert [(m.key, m.value) for m in got] == data
    # kcat prints values as hex-free raw bytes; compare the keys and sizes it reports.
    out = kcat(silt.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%k %S\n")
    assert out.decode().splitlines() == [f"{k.decode()} {len(v)}" for k, v in data]


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_writes_librdkafka_reads(silt, codec):
    topic = f"kp-{codec}"
    create_topic(silt.bootstrap, topic)
    data = payloads(300, codec + "kp")
    producer = KafkaProducer(bootstrap_servers=silt.bootstrap, acks="all", compression_type=codec, linger_ms=10)
    for key, value in data:
        producer.send(topic, key=key, value=value, partition=0)
    producer.flush(60)
    producer.close()
    got = confluent_read(silt.bootstrap, topic, [0], len(data))
    assert [(m.key(), m.value()) for m in got] == data


@pytest.mark.parametrize("codec", ["gzip", "snappy"])
def test_kafkajs_writes_librdkafka_reads(silt, codec):
    topic = f"js-{codec}"
    create_topic(silt.bootstrap, topic)
    data = payloads(300, codec + "js")
    b64 = lambda b: base64.b64encode(b).decode()
    run_node("produce.js", {
        "brokers": [silt.bootstrap], "topic": topic, "codec": codec, "chunk": 100,
        "messages": [{"partition": 0, "key": b64(k), "value": b64(v)} for k, v in data],
    })
    got = confluent_read(silt.bootstrap, topic, [0], len(data))
    assert [(m.key(), m.value()) for m in got] == data


def test_kcat_writes_compressed_librdkafka_reads(silt):
    create_topic(silt.bootstrap, "kcat-zstd")
    lines = b"".join(b"line %d %s\n" % (i, b"x" * (i % 50)) for i in range(1000))
    kcat(silt.bootstrap, "-P", "-t", "kcat-zstd", "-p", "0", "-z", "zstd", input=lines)
    got = confluent_read(silt.bootstrap, "kcat-zstd", [0], 1000)
    assert b"".join(m.value() + b"\n" for m in got) == lines
