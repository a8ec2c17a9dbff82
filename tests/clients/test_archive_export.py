"""Archived segments as Parquet (#18): `silt archive export` writes one file per archived
segment under Hive-style paths in an S3 bucket, an independent reader (pyarrow) reads the
prefix back as one table, and that table is exactly what a read_committed consumer reads from
offset 0: keys, values, timestamps, headers (nulls included), with aborted transactions and
control records left out. A second export writes nothing; one after more segments are archived
writes only theirs."""

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from confluent_kafka import Producer

from conftest import admin_json, metric, silt_cli, wait_for
from helpers import confluent_produce, confluent_read, create_topic
from test_historical import TOPIC_CONFIG, T0, only_in_the_archive, tiered_silt

TOPIC = "orders"
PARTITIONS = 2


def records(first, count):
    """Keyed and unkeyed records, values null now and then, zero to two headers (one null)."""
    out = []
    for i in range(first, first + count):
        key = None if i % 7 == 0 else b"customer-%d" % (i % 13)
        value = None if i % 11 == 0 else b"order-%d-" % i + bytes([i % 256]) * (i % 400)
        headers = [("n", b"%d" % i), ("trace", None)][: i % 3]
        out.append((i % PARTITIONS, key, value, headers, T0 + 1000 * i))
    return out


def produce(silt, batch):
    # Small batches, so segments roll often (a batch never spans two segments).
    confluent_produce(silt.bootstrap, TOPIC, batch, **{"linger.ms": 10, "batch.size": 8192})


def produce_with_an_aborted_transaction(silt):
    produce(silt, records(0, 1500))
    producer = Producer({"bootstrap.servers": silt.bootstrap, "transactional.id": "export-test", "transaction.timeout.ms": 10000})
    producer.init_transactions(30)
    producer.begin_transaction()
    for p in range(PARTITIONS):
        producer.produce(TOPIC, b"committed-in-a-transaction", key=b"txn", partition=p, timestamp=T0 + 1_600_000)
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(40):
        producer.produce(TOPIC, b"aborted-%d" % i, key=b"txn", partition=i % PARTITIONS, timestamp=T0 + 1_600_000)
    producer.flush(30)
    producer.abort_transaction(30)
    produce(silt, records(1500, 1500))
    return 3000 + PARTITIONS


def consumed(silt, count):
    """(partition, offset, timestamp, key, value, headers) of every committed record."""
    rows = [
        (m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value(), tuple((k, v) for k, v in (m.headers() or [])))
        for m in confluent_read(silt.bootstrap, TOPIC, list(range(PARTITIONS)), count, start=0, timeout=120, **{"isolation.level": "read_committed"})
    ]
    return sorted(rows, key=lambda r: (r[0], r[1]))


def exported(s3, prefix, into: Path):
    """Downloads the export and reads it as one Hive-partitioned dataset, sorted."""
    for key in s3.keys(prefix + "/"):
        path = into / key
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.client.download_file(s3.bucket, key, str(path))
    table = ds.dataset(into / prefix, format="parquet", partitioning="hive").to_table()
    assert set(table.column("topic").to_pylist()) == {TOPIC}
    columns = {name: table.column(name).to_pylist() for name in ("partition", "offset", "key", "value", "headers")}
    timestamps = table.column("timestamp").cast(pa.int64()).to_pylist()
    rows = [
        (columns["partition"][i], columns["offset"][i], timestamps[i], columns["key"][i], columns["value"][i],
         tuple((h["key"], h["value"]) for h in columns["headers"][i]))
        for i in range(table.num_rows)
    ]
    return sorted(rows, key=lambda r: (r[0], r[1])), table


def export(s3, prefix, *args):
    done = silt_cli("archive", "--archive", s3.url(), "export", TOPIC, "--format", "parquet", "--to", s3.url(prefix), *args, env=s3.env, timeout=300)
    assert done.returncode == 0, done.stderr
    written, skipped = map(int, re.search(r"(\d+) files written .*, (\d+) already there", done.stdout).groups())
    return written, skipped, done.stdout


def test_a_parquet_export_reads_back_as_what_a_consumer_reads(silt_factory, s3, tmp_path):
    silt = tiered_silt(silt_factory, s3)
    create_topic(silt.bootstrap, TOPIC, partitions=PARTITIONS, config=TOPIC_CONFIG)
    committed = produce_with_an_aborted_transaction(silt)
    wait_for(lambda: only_in_the_archive(silt, TOPIC), timeout=240, what=f"{TOPIC} archived and gone from the local log")
    expected = consumed(silt, committed)
    assert not any(r[4] and r[4].startswith(b"aborted") for r in expected)

    written, skipped, report = export(s3, "exports")
    segments = [k for k in s3.keys("cluster-a/") if k.endswith(".log")]
    assert written == len(segments) and skipped == 0, report
    files = s3.keys("exports/")
    assert all(re.fullmatch(rf"exports/topic={TOPIC}/partition=[01]/date=\d{{4}}-\d\d-\d\d/\d{{20}}-\d{{20}}-[0-9a-f]{{16}}\.parquet", k) for k in files), files
    rows, table = exported(s3, "exports", tmp_path / "first")
    assert table.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert rows == expected
    # The Hive directories agree with the columns: a file's date is its first record's day.
    for key in files:
        one = pq.read_table(tmp_path / "first" / key)
        partition, date = re.search(r"partition=(\d+)/date=([\d-]+)/", key).groups()
        assert set(one.column("partition").to_pylist()) == {int(partition)}
        first = min(one.column("timestamp").to_pylist())
        assert first.strftime("%Y-%m-%d") == date, key

    # Again: nothing to do.
    written, skipped, report = export(s3, "exports")
    assert written == 0 and skipped == len(segments), report

    # More records archived: only their segments are written.
    produce(silt, records(3000, 600))
    wait_for(lambda: only_in_the_archive(silt, TOPIC), timeout=240, what="the new records archived")
    now = [k for k in s3.keys("cluster-a/") if k.endswith(".log")]
    written, skipped, report = export(s3, "exports")
    assert written == len(now) - len(segments) and skipped == len(segments), report
    rows, _ = exported(s3, "exports", tmp_path / "second")
    assert rows == consumed(silt, committed + 600)


def test_a_topic_with_archive_parquet_keeps_its_table_current(silt_factory, s3, tmp_path):
    silt = tiered_silt(silt_factory, s3)
    create_topic(silt.bootstrap, TOPIC, partitions=PARTITIONS, config={**TOPIC_CONFIG, "archive.parquet": "true"})
    committed = produce_with_an_aborted_transaction(silt)
    wait_for(lambda: only_in_the_archive(silt, TOPIC), timeout=240, what=f"{TOPIC} archived")
    segments = [k for k in s3.keys("cluster-a/") if k.endswith(".log")]
    files = s3.keys("cluster-a/parquet/")
    assert len(files) == len(segments), files
    rows, _ = exported(s3, "cluster-a/parquet", tmp_path)
    assert rows == consumed(silt, committed)
    # Operators see where the table is and what it cost.
    topic = next(t for t in admin_json(silt, "/v1/status")["topics"] if t["name"] == TOPIC)
    assert topic["parquet_table"] == f"{s3.url()}/parquet/topic={TOPIC}/"
    assert metric(silt, "silt_archive_parquet_files_total") == len(files)
    sizes = sum(s3.client.head_object(Bucket=s3.bucket, Key=k)["ContentLength"] for k in files)
    assert metric(silt, "silt_archive_parquet_bytes_total") == sizes
    # The CLI names files as the archiver does: exporting to the same prefix finds them done.
    written, skipped, report = export(s3, "cluster-a/parquet")
    assert written == 0 and skipped == len(segments), report


def test_json_values_become_typed_columns_given_a_schema(silt_factory, s3, tmp_path):
    import json

    silt = tiered_silt(silt_factory, s3)
    create_topic(silt.bootstrap, TOPIC, partitions=PARTITIONS, config=TOPIC_CONFIG)
    events = [{"order": i, "amount": i / 4, "sku": "SKU-%d" % (i % 9), "paid": i % 2 == 0, "items": [i, "x"]} for i in range(1200)]
    values = [json.dumps(e).encode() for e in events]
    values[5] = b"not json"
    values[6] = json.dumps({"order": "six", "amount": None}).encode()
    produce(silt, [(i % PARTITIONS, None, v, [], T0 + i) for i, v in enumerate(values)])
    wait_for(lambda: only_in_the_archive(silt, TOPIC), timeout=240, what=f"{TOPIC} archived")
    schema = tmp_path / "orders.schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {
        "order": {"type": "integer"}, "amount": {"type": ["number", "null"]}, "sku": {"type": "string"},
        "paid": {"type": "boolean"}, "items": {"type": "array"}}}))
    written, _, report = export(s3, "typed", "--json-schema", str(schema))
    assert "1 of 1200 values were not JSON objects" in report, report
    _, table = exported(s3, "typed", tmp_path / "typed")
    assert table.schema.field("order").type == pa.int64()
    assert table.schema.field("amount").type == pa.float64()
    assert table.schema.field("paid").type == pa.bool_()
    by_value = {v: row for v, row in zip(table.column("value").to_pylist(), table.select(["order", "amount", "sku", "paid", "items"]).to_pylist())}
    assert len(by_value) == 1200
    for i in (0, 1, 7, 1199):
        assert by_value[values[i]] == {"order": i, "amount": i / 4, "sku": "SKU-%d" % (i % 9), "paid": i % 2 == 0, "items": json.dumps([i, "x"], separators=(",", ":"))}
    # Not JSON, and JSON of other types: nulls, the bytes kept in `value`.
    assert set(by_value[b"not json"].values()) == {None}
    assert set(by_value[values[6]].values()) == {None}

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"properties": {"offset": {"type": "integer"}}}))
    done = silt_cli("archive", "--archive", s3.url(), "export", TOPIC, "--to", s3.url("x"), "--json-schema", str(bad), env=s3.env)
    assert done.returncode != 0 and "offset" in done.stderr and "bad.json" in done.stderr, done.stderr


def test_an_export_can_be_bounded_and_bad_requests_are_named(silt_factory, s3, tmp_path):
    silt = tiered_silt(silt_factory, s3)
    create_topic(silt.bootstrap, TOPIC, partitions=PARTITIONS, config=TOPIC_CONFIG)
    produce(silt, records(0, 1500))
    wait_for(lambda: only_in_the_archive(silt, TOPIC), timeout=240, what=f"{TOPIC} archived")
    expected = consumed(silt, 1500)

    # One partition, from a time: whole segments holding records at or after it.
    since = T0 + 1000 * 1000
    written, _, report = export(s3, "bounded", "--partition", "1", "--since", str(since))
    assert written > 0, report
    rows, _ = exported(s3, "bounded", tmp_path)
    assert {r[0] for r in rows} == {1}
    wanted = [r for r in expected if r[0] == 1 and r[2] >= since]
    assert set(wanted) <= set(rows)
    # The first segments, wholly before the time, were left out.
    assert len(rows) < len([r for r in expected if r[0] == 1]), report

    for args, why in [
        (["no-such-topic"], "no-such-topic"),
        ([TOPIC, "--partition", "5"], "not 5"),
        ([TOPIC, "--since", "yesterday"], "yesterday"),
    ]:
        done = silt_cli("archive", "--archive", s3.url(), "export", *args, "--to", str(tmp_path / "x"), env=s3.env)
        assert done.returncode != 0 and why in done.stderr, (args, done.stderr)
