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


CODEC_IDS = {"uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def stored_codecs(silt, topic):
    """The codec of every batch in partition 0's local segments, read from the files."""
    import struct
    codecs = []
    for segment in sorted((silt.data_dir / "topics" / topic / "0").glob("*.log")):
        data = segment.read_bytes()
        at = 0
        while at + 61 <= len(data):
            length = struct.unpack(">i", data[at + 8:at + 12])[0]
            if length <= 0:
                break  # preallocated space
            attributes = struct.unpack(">h", data[at + 21:at + 23])[0]
            if not attributes & 0x20:  # data, not a transaction marker
                codecs.append(attributes & 0x07)
            at += 12 + length
    return codecs


@pytest.mark.parametrize("topic_codec", ["zstd", "lz4", "gzip", "snappy", "uncompressed"])
def test_topic_compression_type_recompresses_what_producers_send(silt, topic_codec):
    """Kafka's broker-side compression: a topic's compression.type is how its batches are
    stored, whatever codec the producer used; every client reads them back."""
    topic = f"t-{topic_codec}"
    create_topic(silt.bootstrap, topic, config={"compression.type": topic_codec})
    data = payloads(400, topic_codec)
    # An idempotent librdkafka producer sending uncompressed, then kafka-python sending gzip.
    confluent_produce(silt.bootstrap, topic, [(0, k, v, None, None) for k, v in data[:200]],
                      **{"compression.type": "none", "enable.idempotence": True})
    producer = KafkaProducer(bootstrap_servers=silt.bootstrap, acks="all", compression_type="gzip", linger_ms=10)
    for key, value in data[200:]:
        producer.send(topic, key=key, value=value, partition=0)
    producer.flush(60)
    producer.close()
    assert set(stored_codecs(silt, topic)) == {CODEC_IDS[topic_codec]}
    got = confluent_read(silt.bootstrap, topic, [0], len(data))
    assert [(m.key(), m.value()) for m in got] == data
    assert [(m.key, m.value) for m in kafka_python_read(silt.bootstrap, topic, [0], len(data))] == data
    if topic_codec in ("gzip", "uncompressed"):  # kafkajs reads these without plugins
        out = run_node("consume.js", {"brokers": [silt.bootstrap], "topic": topic, "groupId": "js", "count": len(data)})
        assert [base64.b64decode(v) for v in out["values"]] == [v for _, v in data]


def test_compression_type_shows_and_changes_and_refuses_unknown_codecs(silt):
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    refused = admin.create_topics([NewTopic("bad", 1, 1, config={"compression.type": "brotli"})])
    with pytest.raises(Exception, match="(?i)compression.type"):
        refused["bad"].result(30)
    create_topic(silt.bootstrap, "switch")
    resource = ConfigResource(ConfigResource.Type.TOPIC, "switch")
    assert admin.describe_configs([resource])[resource].result(30)["compression.type"].value == "producer"
    confluent_produce(silt.bootstrap, "switch", [(0, b"k", b"v" * 500, None, None)], **{"compression.type": "lz4"})
    resource.set_config("compression.type", "zstd")
    admin.alter_configs([resource])[resource].result(30)
    resource = ConfigResource(ConfigResource.Type.TOPIC, "switch")
    assert admin.describe_configs([resource])[resource].result(30)["compression.type"].value == "zstd"
    confluent_produce(silt.bootstrap, "switch", [(0, b"k", b"v" * 500, None, None)], **{"compression.type": "lz4"})
    # The batch written before the change stays as produced; the one after is zstd.
    assert stored_codecs(silt, "switch") == [CODEC_IDS["lz4"], CODEC_IDS["zstd"]]
    import urllib.request
    metrics = urllib.request.urlopen(f"{silt.admin}/metrics").read().decode()
    assert "silt_produce_recompressed_batches_total 1" in metrics
