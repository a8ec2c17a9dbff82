"""The REST Proxy v3 read API on the admin listener (#17): clusters, brokers, topics,
partitions and configs in Confluent's shapes, followed link by link as a tool would, against
what a Kafka client sees; and every route of the OpenAPI document answering what the document
says."""

import json
import urllib.error
import urllib.request

from confluent_kafka.admin import AdminClient

from conftest import admin_json
from helpers import create_topic


def get(silt, path_or_url):
    url = path_or_url if path_or_url.startswith("http") else f"{silt.admin}{path_or_url}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def resolve(doc, schema):
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def conforms(doc, schema, value, where):
    """The subset of JSON Schema the document uses: required fields, enums, arrays of items."""
    schema = resolve(doc, schema)
    for field in schema.get("required", []):
        assert field in value, f"{where}: no '{field}' in {value}"
    for field, sub in schema.get("properties", {}).items():
        if field in value and "enum" in sub:
            assert value[field] in sub["enum"], f"{where}: {field}={value[field]!r} not in {sub['enum']}"
        if field in value and sub.get("type") == "array":
            for i, item in enumerate(value[field]):
                conforms(doc, sub["items"], item, f"{where}.{field}[{i}]")


def test_a_tool_walks_the_cluster_by_its_links(silt):
    create_topic(silt.bootstrap, "orders", partitions=3, config={"retention.ms": "123456"})
    create_topic(silt.bootstrap, "audit", partitions=1)
    status, clusters = get(silt, "/v3/clusters")
    assert status == 200 and clusters["kind"] == "KafkaClusterList"
    (cluster,) = clusters["data"]
    assert cluster["cluster_id"] == admin_json(silt, "/v1/status")["cluster_id"]
    assert cluster["metadata"]["self"] == f"{silt.admin}/v3/clusters/{cluster['cluster_id']}"

    # Brokers: the one Kafka clients are told of.
    _, brokers = get(silt, cluster["brokers"]["related"])
    metadata = AdminClient({"bootstrap.servers": silt.bootstrap}).list_topics(timeout=10)
    assert {(b["broker_id"], b["host"], b["port"]) for b in brokers["data"]} == {(b.id, b.host, b.port) for b in metadata.brokers.values()}
    _, controller = get(silt, cluster["controller"]["related"])
    assert controller["kind"] == "KafkaBroker" and controller["broker_id"] == metadata.controller_id

    # Topics, sorted, with what Kafka's metadata says of them.
    _, topics = get(silt, cluster["topics"]["related"])
    assert [t["topic_name"] for t in topics["data"]] == ["audit", "orders"]
    orders = next(t for t in topics["data"] if t["topic_name"] == "orders")
    assert (orders["partitions_count"], orders["replication_factor"], orders["is_internal"]) == (3, 1, False)
    _, partitions = get(silt, orders["partitions"]["related"])
    assert [p["partition_id"] for p in partitions["data"]] == [0, 1, 2]
    for p in partitions["data"]:
        kafka = metadata.topics["orders"].partitions[p["partition_id"]]
        assert (p["leader_id"], p["replica_ids"], p["isr_ids"]) == (kafka.leader, kafka.replicas, kafka.isrs)
        _, leader = get(silt, p["leader"]["related"])
        assert leader["broker_id"] == kafka.leader
    status, one = get(silt, partitions["data"][1]["metadata"]["self"])
    assert status == 200 and one == partitions["data"][1]

    # Configs: a value set at creation says so; the others are defaults.
    _, configs = get(silt, orders["configs"]["related"])
    by_name = {c["name"]: c for c in configs["data"]}
    assert by_name["retention.ms"]["value"] == "123456"
    assert (by_name["retention.ms"]["source"], by_name["retention.ms"]["is_default"]) == ("DYNAMIC_TOPIC_CONFIG", False)
    assert (by_name["segment.bytes"]["source"], by_name["segment.bytes"]["is_default"]) == ("DEFAULT_CONFIG", True)
    status, one = get(silt, by_name["retention.ms"]["metadata"]["self"])
    assert status == 200 and one == by_name["retention.ms"]

    # What is not there is a 404 in the REST Proxy's error shape, naming what was asked.
    cid = cluster["cluster_id"]
    for path, named in [
        ("/v3/clusters/nope", "nope"),
        (f"/v3/clusters/{cid}/topics/missing", "missing"),
        (f"/v3/clusters/{cid}/topics/orders/partitions/9", "9"),
        (f"/v3/clusters/{cid}/brokers/77", "77"),
        (f"/v3/clusters/{cid}/topics/orders/configs/no.such", "no.such"),
    ]:
        status, body = get(silt, path)
        assert status == 404 and body["error_code"] == 404 and named in body["message"], (path, body)


def test_every_documented_route_answers_as_documented(silt):
    create_topic(silt.bootstrap, "orders", partitions=2)
    status, doc = get(silt, "/v3/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    _, clusters = get(silt, "/v3/clusters")
    cid = clusters["data"][0]["cluster_id"]
    broker = get(silt, f"/v3/clusters/{cid}/brokers")[1]["data"][0]["broker_id"]
    values = {"cluster_id": cid, "broker_id": broker, "topic_name": "orders", "partition_id": 1, "name": "retention.ms"}
    assert len(doc["paths"]) >= 11
    for template, item in doc["paths"].items():
        path = template
        for name, value in values.items():
            path = path.replace("{" + name + "}", str(value))
        assert "{" not in path, f"no value for a parameter of {template}"
        documented = {p["name"] for p in item["get"]["parameters"]}
        assert documented == {n for n in values if "{" + n + "}" in template}, template
        status, body = get(silt, path)
        assert status == 200, (template, body)
        conforms(doc, item["get"]["responses"]["200"]["content"]["application/json"]["schema"], body, template)


def test_a_topics_tiering_shows_both_ranges_and_the_bucket_bytes(silt_factory, s3):
    from helpers import confluent_produce
    from test_historical import TOPIC_CONFIG, only_in_the_archive, tiered_silt

    from conftest import wait_for

    silt = tiered_silt(silt_factory, s3)
    create_topic(silt.bootstrap, "tiered", partitions=2, config=TOPIC_CONFIG)
    confluent_produce(silt.bootstrap, "tiered", [(i % 2, None, b"x" * 500, [], None) for i in range(2000)],
                      **{"linger.ms": 10, "batch.size": 8192})
    wait_for(lambda: only_in_the_archive(silt, "tiered"), timeout=240, what="tiered archived and gone from the local log")
    status, tiering = get(silt, "/v1/topics/tiered/tiering")
    assert status == 200 and tiering["topic"]["name"] == "tiered"
    for p in tiering["topic"]["partitions"]:
        archive = p["archive"]
        assert archive["archive_start_offset"] == 0 and archive["archived_next_offset"] == p["high_watermark"] == 1000
        assert p["local_start_offset"] == p["high_watermark"] and archive["backlog_segments"] == 0
        # The bucket's bytes for the partition are the segments its root names.
        prefix_bytes = sum(
            o["Size"] for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix="cluster-a/")
            for o in page.get("Contents", []) if o["Key"].endswith(".log") and "/tiered_" in o["Key"] and f"/{p['partition']}/segments/" in o["Key"]
        )
        assert archive["archived_bytes"] == prefix_bytes, (archive, prefix_bytes)
    assert tiering["archive_cache"]["bytes"] >= 0 and "hit_ratio" in tiering["archive_cache"]
    status, body = get(silt, "/v1/topics/nope/tiering")
    assert status == 404 and "nope" in body["error"]
