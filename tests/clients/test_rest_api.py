"""The REST Proxy v3 read API on the admin listener (#17): clusters, brokers, topics,
partitions and configs in Confluent's shapes, followed link by link as a tool would, against
what a Kafka client sees; and every route of the OpenAPI document answering what the document
says."""

import base64
import json
import time
import urllib.error
import urllib.request

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from kafka.partitioner.default import murmur2

from conftest import admin_json, wait_for
from helpers import confluent_produce, confluent_read, create_topic


def murmur2_partition(key, partitions):
    """Where the Java client's default partitioner puts a key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def call(silt, method, path_or_url, body=None, raw=None):
    url = path_or_url if path_or_url.startswith("http") else f"{silt.admin}{path_or_url}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            kind = response.headers.get("Content-Type", "")
            return response.status, (json.loads(text) if text and "json" in kind else text.decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(silt, path_or_url):
    return call(silt, "GET", path_or_url)


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
    """Every operation of the OpenAPI document, called with the values its parameters name,
    answers its documented status with a body of its documented schema: reads first, then
    the writes, in an order in which each has something to act on."""
    create_topic(silt.bootstrap, "orders", partitions=2)
    confluent_produce(silt.bootstrap, "orders", [(0, b"k", b'{"n": 1}', [], None)])
    consumer = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "readers", "enable.auto.commit": False})
    consumer.assign([TopicPartition("orders", 0, 0)])
    consumer.commit(offsets=[TopicPartition("orders", 0, 1)], asynchronous=False)
    consumer.close()
    status, doc = get(silt, "/v3/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    _, clusters = get(silt, "/v3/clusters")
    cid = clusters["data"][0]["cluster_id"]
    broker = get(silt, f"/v3/clusters/{cid}/brokers")[1]["data"][0]["broker_id"]
    values = {"cluster_id": cid, "broker_id": broker, "topic_name": "orders", "partition_id": 0, "name": "retention.ms",
              "consumer_group_id": "readers", "topic": "orders", "key": "k"}
    bodies = {
        "CreateTopicRequest": {"topic_name": "made", "partitions_count": 2, "configs": [{"name": "retention.ms", "value": "60000"}]},
        "UpdateConfigRequest": {"value": "7200000"},
        "AlterConfigBatchRequest": {"data": [{"name": "retention.ms", "value": "3600000"}, {"name": "cleanup.policy", "operation": "DELETE"}]},
        "ProduceRequest": {"partition_id": 0, "key": {"type": "STRING", "data": "k2"}, "value": {"type": "JSON", "data": {"n": 2}}},
        "ResetRequest": {"to": "earliest"},
    }
    # Operations on the cluster's shape (moving replicas, removing brokers) need more than one
    # broker; the cluster tests call them.
    skipped = {"/v1/brokers/{broker_id}/decommission", "/v1/brokers/{broker_id}",
               "/v1/partitions/{topic_name}/{partition_id}/reassign", "/v1/partitions/{topic_name}/{partition_id}/transfer_leadership"}
    order = {"get": 0, "post": 1, "put": 2, "delete": 3}
    operations = sorted(((order[m], template, m, op) for template, item in doc["paths"].items() for m, op in item.items()),
                        key=lambda o: (o[0], -len(o[1]), o[1]))
    assert len(operations) >= 30
    called = 0
    for _, template, method, op in operations:
        if template in skipped:
            continue
        path = template
        for name, value in values.items():
            path = path.replace("{" + name + "}", str(value))
        assert "{" not in path, f"no value for a parameter of {template}"
        documented = {p["name"] for p in op["parameters"] if p["in"] == "path"}
        assert documented == {n for n in values if "{" + n + "}" in template}, template
        query = [f"{p['name']}={values[p['name']]}" for p in op["parameters"] if p["in"] == "query" and (p["required"] or p["name"] in values)]
        if query:
            path += "?" + "&".join(query)
        body = None
        if "requestBody" in op:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            body = bodies[ref]
        status, answer = call(silt, method.upper(), path, body)
        (expected,) = [int(code) for code in op["responses"] if int(code) < 300]
        assert status == expected, (method, template, status, answer)
        content = op["responses"][str(expected)].get("content", {})
        if "application/json" in content:
            conforms(doc, content["application/json"]["schema"], answer, f"{method} {template}")
        elif "text/plain" in content:
            assert isinstance(answer, str) and "silt_" in answer
        called += 1
    assert called == len(operations) - len(skipped)
    # The writes did what they said: a topic made, the one named deleted.
    topics = AdminClient({"bootstrap.servers": silt.bootstrap}).list_topics(timeout=10).topics
    assert "made" in topics and "orders" not in topics


def test_topics_configs_and_records_written_over_http_are_what_kafka_clients_see(silt):
    cid = get(silt, "/v3/clusters")[1]["data"][0]["cluster_id"]
    base = f"/v3/clusters/{cid}/topics"
    status, made = call(silt, "POST", base, {"topic_name": "events", "partitions_count": 3,
                                              "configs": [{"name": "retention.ms", "value": "86400000"}]})
    assert status == 201 and (made["topic_name"], made["partitions_count"]) == ("events", 3), made
    status, again = call(silt, "POST", base, {"topic_name": "events", "partitions_count": 3})
    assert status == 409 and "events" in again["message"], again
    status, bad = call(silt, "POST", base, {"topic_name": "bad", "configs": [{"name": "no.such.config", "value": "1"}]})
    assert status == 400 and "no.such.config" in bad["message"], bad
    status, bad = call(silt, "POST", base, raw=b"{not json")
    assert status == 400 and "request body" in bad["message"]

    # Configs: set, read back through Kafka's DescribeConfigs, reset.
    assert call(silt, "PUT", f"{base}/events/configs/retention.ms", {"value": "3600000"})[0] == 204
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    described = admin.describe_configs([ConfigResource("topic", "events")])[ConfigResource("topic", "events")].result(10)
    assert described["retention.ms"].value == "3600000"
    status, refused = call(silt, "PUT", f"{base}/events/configs/retention.ms", {"value": "soon"})
    assert status == 400 and "retention.ms" in refused["message"], refused
    assert call(silt, "DELETE", f"{base}/events/configs/retention.ms")[0] == 204
    assert get(silt, f"{base}/events/configs/retention.ms")[1]["is_default"] is True

    # Records: JSON, STRING and BINARY, to a partition and by key; one request may stream several.
    status, first = call(silt, "POST", f"{base}/events/records", {
        "partition_id": 1, "key": {"type": "STRING", "data": "user-7"}, "value": {"type": "JSON", "data": {"clicks": 3}},
        "headers": [{"name": "source", "value": base64.b64encode(b"rest").decode()}], "timestamp": "2026-12-01T10:00:00Z"})
    assert status == 200 and (first["partition_id"], first["offset"]) == (1, 0), first
    assert first["timestamp"] == "2026-12-01T10:00:00.000Z" and first["value"] == {"type": "JSON", "size": len(b'{"clicks":3}')}
    stream = b"".join(json.dumps(r).encode() + b"\n" for r in [
        {"key": {"type": "STRING", "data": "user-7"}, "value": {"type": "BINARY", "data": base64.b64encode(b"\x00\xffraw").decode()}},
        {"key": {"type": "STRING", "data": "user-7"}, "value": {"data": [1, 2]}},
    ])
    status, answers = call(silt, "POST", f"{base}/events/records", raw=stream)
    assert status == 200 and len(answers) == 2
    by_key = murmur2_partition(b"user-7", 3)
    assert [a["partition_id"] for a in answers] == [by_key, by_key] and answers[1]["offset"] == answers[0]["offset"] + 1
    status, bad = call(silt, "POST", f"{base}/events/records", {"partition_id": 9, "value": {"data": 1}})
    assert status == 404 and "9" in bad["message"]
    status, bad = call(silt, "POST", f"{base}/events/records", {"value": {"type": "BINARY", "data": "%%%"}})
    assert status == 400 and "base64" in bad["message"]
    got = confluent_read(silt.bootstrap, "events", [1], 1)
    assert (got[0].key(), got[0].value(), got[0].headers(), got[0].timestamp()[1]) == (
        b"user-7", b'{"clicks":3}', [("source", b"rest")], 1796119200000)
    if by_key != 1:
        got = confluent_read(silt.bootstrap, "events", [by_key], 2)
        assert [m.value() for m in got] == [b"\x00\xffraw", b"[1,2]"]

    # The record browser reads them back, base64, saying the local log answered.
    status, page = get(silt, "/v1/topics/events/partitions/1/records?offset=0")
    assert status == 200 and page["tier"] == "local" and page["next_offset"] == 1
    (record,) = page["records"]
    assert base64.b64decode(record["value"]) == b'{"clicks":3}' and record["timestamp"] == 1796119200000
    status, bad = get(silt, "/v1/topics/events/partitions/1/records?offset=5")
    assert status == 416 and "0..1" in bad["error"]

    assert call(silt, "DELETE", f"{base}/events")[0] == 204
    assert get(silt, f"{base}/events")[0] == 404
    assert "events" not in admin.list_topics(timeout=10).topics


def test_a_groups_lag_shows_and_an_empty_groups_offsets_reset(silt):
    create_topic(silt.bootstrap, "work", partitions=2)
    confluent_produce(silt.bootstrap, "work", [(i % 2, None, b"job-%d" % i, [], 1_700_000_000_000 + i * 1000) for i in range(20)])
    consumer = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "workers", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "client.id": "worker-1"})
    consumer.subscribe(["work"])
    read = 0
    deadline = time.monotonic() + 60
    while read < 6 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            read += 1
    consumer.commit(offsets=[TopicPartition("work", 0, 3), TopicPartition("work", 1, 2)], asynchronous=False)
    cid = get(silt, "/v3/clusters")[1]["data"][0]["cluster_id"]
    base = f"/v3/clusters/{cid}/consumer-groups"
    status, groups = get(silt, base)
    assert status == 200 and [g["consumer_group_id"] for g in groups["data"]] == ["workers"]
    _, members = get(silt, f"{base}/workers/consumers")
    (member,) = members["data"]
    assert member["client_id"] == "worker-1"
    assert sorted((a["topic_name"], a["partition_id"]) for a in member["assignments"]) == [("work", 0), ("work", 1)]
    _, lags = get(silt, f"{base}/workers/lags")
    assert sorted((l["partition_id"], l["current_offset"], l["log_end_offset"], l["lag"]) for l in lags["data"]) == [(0, 3, 10, 7), (1, 2, 10, 8)]
    assert all(l["consumer_id"] == member["consumer_id"] for l in lags["data"])
    _, summary = get(silt, f"{base}/workers/lag-summary")
    assert (summary["total_lag"], summary["max_lag"], summary["max_lag_partition_id"]) == (15, 8, 1)

    # Not while it has a member.
    status, refused = call(silt, "POST", "/v1/groups/workers/reset", {"to": "earliest"})
    assert status == 409 and "member" in refused["message"], refused
    consumer.close()
    wait_for(lambda: get(silt, f"{base}/workers")[1]["state"] == "Empty", what="the group empty")
    status, done = call(silt, "POST", "/v1/groups/workers/reset", {"to": "timestamp", "timestamp": 1_700_000_004_000})
    assert status == 200 and sorted((r["partition"], r["offset"]) for r in done["reset"]) == [(0, 2), (1, 2)], done
    assert sorted((l["partition_id"], l["lag"]) for l in get(silt, f"{base}/workers/lags")[1]["data"]) == [(0, 8), (1, 8)]
    assert call(silt, "POST", "/v1/groups/workers/reset", {"to": "latest", "topic": "work", "partitions": [1]})[0] == 200
    # What a Kafka client reads from the group afterwards.
    check = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "workers"})
    committed = check.committed([TopicPartition("work", 0), TopicPartition("work", 1)], timeout=10)
    check.close()
    assert [(tp.partition, tp.offset) for tp in committed] == [(0, 2), (1, 10)]
    for body, named in [({"to": "yesterday"}, "yesterday"), ({"to": "timestamp"}, "timestamp"), ({"to": "latest", "topic": "nope"}, "nope")]:
        status, refused = call(silt, "POST", "/v1/groups/workers/reset", body)
        assert status in (400, 404) and named in refused["message"], (body, refused)
    assert get(silt, f"{base}/nobody")[0] == 404


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
