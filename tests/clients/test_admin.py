"""Admin operations with librdkafka's and kafka-python's admin clients, and the errors a user
gets for bad requests."""

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType, NewTopic as KNewTopic
from kafka.errors import TopicAlreadyExistsError

from helpers import confluent_produce


def error_name(excinfo):
    return excinfo.value.args[0].name()


def test_create_describe_alter_grow_delete_librdkafka(silt):
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    admin.create_topics([NewTopic("adm", 2, 1, config={"retention.ms": "86400000", "retention.local.target.ms": "3600000"})])["adm"].result(30)
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "adm")])
    configs = list(described.values())[0].result(30)
    assert configs["retention.ms"].value == "86400000"
    assert configs["local.retention.ms"].value == "3600000", "Redpanda's name maps to Kafka's"
    assert configs["segment.bytes"].is_default
    assert not configs["retention.ms"].is_default

    resource = ConfigResource(ConfigResource.Type.TOPIC, "adm", incremental_configs=[
        ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.local.target.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    list(admin.incremental_alter_configs([resource]).values())[0].result(30)
    configs = list(admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "adm")]).values())[0].result(30)
    assert configs["segment.bytes"].value == "1048576"
    assert configs["local.retention.ms"].value == "86400000", "deleted override falls back to retention.ms"

    admin.create_partitions([NewPartitions("adm", 5)])["adm"].result(30)
    metadata = admin.list_topics("adm", timeout=10)
    assert len(metadata.topics["adm"].partitions) == 5
    confluent_produce(silt.bootstrap, "adm", [(4, None, b"in the new partition", None, None)])

    admin.delete_topics(["adm"])["adm"].result(30)
    assert "adm" not in admin.list_topics(timeout=10).topics


def test_errors_carry_kafka_codes_and_messages(silt):
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    admin.create_topics([NewTopic("dup", 1, 1)])["dup"].result(30)
    cases = [
        (NewTopic("dup", 1, 1), "TOPIC_ALREADY_EXISTS"),
        (NewTopic("three-replicas", 1, 3), "INVALID_REPLICATION_FACTOR"),
        (NewTopic("bad config", 1, 1), "TOPIC_EXCEPTION"),  # librdkafka's name for code 17
        (NewTopic("bad-value", 1, 1, config={"retention.ms": "soon"}), "INVALID_CONFIG"),
        (NewTopic("unknown-key", 1, 1, config={"retention.msx": "1"}), "INVALID_CONFIG"),
        (NewTopic("compacted", 1, 1, config={"cleanup.policy": "shrink"}), "INVALID_CONFIG"),
    ]
    for topic, code in cases:
        with pytest.raises(KafkaException) as excinfo:
            admin.create_topics([topic])[topic.topic].result(30)
        assert error_name(excinfo) == code, (topic.topic, excinfo.value)
    with pytest.raises(KafkaException) as excinfo:
        admin.create_topics([NewTopic("unknown-key2", 1, 1, config={"retention.msx": "1"})])["unknown-key2"].result(30)
    assert "retention.ms" in str(excinfo.value), "the message suggests the right key"
    with pytest.raises(KafkaException) as excinfo:
        admin.create_partitions([NewPartitions("dup", 1)])["dup"].result(30)
    assert error_name(excinfo) == "INVALID_PARTITIONS"
    with pytest.raises(KafkaException) as excinfo:
        admin.delete_topics(["no-such-topic"])["no-such-topic"].result(30)
    assert error_name(excinfo) == "UNKNOWN_TOPIC_OR_PART"


def test_kafka_python_admin(silt):
    admin = KafkaAdminClient(bootstrap_servers=silt.bootstrap)
    try:
        admin.create_topics([KNewTopic("kpa", 3, 1, topic_configs={"redpanda.remote.write": "false"})])
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics([KNewTopic("kpa", 3, 1)])
        configs = admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, "kpa")])
        assert configs["topic"]["kpa"]["remote.storage.enable"]["value"] == "false"
        # IncrementalAlterConfigs (kafka-python's default), then the legacy AlterConfigs, which
        # replaces the whole set (kafka-python sends the other overrides along).
        admin.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "kpa", configs={"retention.bytes": "1000000"})])
        admin.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "kpa", configs={"segment.ms": "600000"})], incremental=False)
        configs = admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, "kpa")])
        assert configs["topic"]["kpa"]["retention.bytes"]["value"] == "1000000"
        assert configs["topic"]["kpa"]["segment.ms"]["value"] == "600000"
        assert configs["topic"]["kpa"]["remote.storage.enable"]["value"] == "false"
        assert "kpa" in admin.list_topics()
        admin.delete_topics(["kpa"])
        assert "kpa" not in admin.list_topics()
    finally:
        admin.close()


def test_auto_creation_and_delete_records(silt):
    # Metadata for an unknown topic creates it (Kafka's default), with the default partitions.
    confluent_produce(silt.bootstrap, "auto-created", [(None, None, b"%d" % i, None, None) for i in range(100)])
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    assert len(admin.list_topics("auto-created", timeout=10).topics["auto-created"].partitions) == 1
    result = admin.delete_records([TopicPartition("auto-created", 0, 40)])
    deleted = list(result.values())[0].result(30)
    assert deleted.low_watermark == 40
    from confluent_kafka import Consumer
    consumer = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "unused"})
    assert consumer.get_watermark_offsets(TopicPartition("auto-created", 0), 10) == (40, 100)
    consumer.close()


def test_auto_creation_can_be_switched_off(silt_factory):
    silt = silt_factory("no-auto", extra_args=["--set", "auto_create_topics=false"])
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    metadata = admin.list_topics("not-created", timeout=10)
    assert metadata.topics["not-created"].error.name() == "UNKNOWN_TOPIC_OR_PART"
