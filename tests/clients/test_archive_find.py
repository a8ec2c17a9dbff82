"""Records by key straight from the bucket (#18): `silt archive find` without a broker and
`/v1/archive/find` on a running one, against what a consumer reads from offset 0.

A topic with `archive.key.index=true` is produced by librdkafka's default partitioner, archived
to moto's S3 server in small segments (60-odd per partition, so each partition has a key filter
over 32 of them and the rest checked one by one), and gone from the local log. Lookups must
find every record of a key and nothing else; an absent key is answered from the filters and
indexes without a segment GET."""

import json
import re
import urllib.parse

from conftest import admin_json, silt_cli, wait_for
from helpers import confluent_produce, confluent_read, create_topic
from test_historical import TOPIC_CONFIG, T0, only_in_the_archive, tiered_silt

KEYS = 40
COUNT = 5000
PARTITIONS = 2
SMALL_SEGMENTS = {**TOPIC_CONFIG, "segment.bytes": "32768"}


def produce_keyed(silt, topic, config):
    create_topic(silt.bootstrap, topic, partitions=PARTITIONS, config=config)
    records = [
        (None, b"customer-%d" % (i % KEYS), b"order-%d-" % i + b"x" * 600, [("n", b"%d" % i)], T0 + i)
        for i in range(COUNT)
    ]
    # Small batches, so segments roll often (a batch never spans two segments).
    confluent_produce(silt.bootstrap, topic, records, **{"linger.ms": 10, "batch.size": 8192})
    wait_for(lambda: only_in_the_archive(silt, topic), timeout=240, what=f"{topic} archived and gone from the local log")
    # What a consumer reads from offset 0, by key.
    by_key = {}
    for msg in confluent_read(silt.bootstrap, topic, list(range(PARTITIONS)), COUNT, start=0, timeout=120):
        by_key.setdefault(msg.key(), []).append((msg.partition(), msg.offset(), msg.value(), msg.headers()))
    return by_key


def settled(s3):
    """Waits until the broker's own store traffic (read-ahead of the consumer before) stops,
    then zeroes the proxy's counts."""
    import time

    def quiet():
        before = s3.proxy.request_count()
        time.sleep(1.0)
        return s3.proxy.request_count() == before

    wait_for(quiet, timeout=60, what="the store quiet")
    s3.proxy.reset_counts()


def cli_find(s3, topic, *args):
    done = silt_cli("archive", "--archive", s3.url(), "find", topic, "--format", "json", *args, env=s3.env)
    assert done.returncode == 0, done.stderr
    found = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    gets = int(re.search(r"(\d+) GETs", done.stderr).group(1))
    return found, gets, done.stderr


def as_rows(found):
    return sorted(
        (f["partition"], f["offset"], f["value"].encode(), [(h["key"], h["value"].encode()) for h in f["headers"]])
        for f in found
    )


def test_every_record_of_a_key_comes_straight_from_the_bucket(silt_factory, s3):
    silt = tiered_silt(silt_factory, s3)
    by_key = produce_keyed(silt, "customers", {**SMALL_SEGMENTS, "archive.key.index": "true"})

    for k in (0, 7, 39):
        key = b"customer-%d" % k
        found, gets, stderr = cli_find(s3, "customers", "--key", key.decode())
        assert as_rows(found) == sorted(by_key[key]), stderr
        # The partition searched holds enough segments for a key filter over 32 of them.
        segments, filtered = map(int, re.search(r"(\d+) segments, \d+ with a key index, (\d+) in key filters", stderr).groups())
        assert segments >= 40 and filtered >= 32, stderr
        assert all(f["key"] == key.decode() for f in found)
        # librdkafka's default partitioner (CRC-32) was named, and the key found where it put it.
        assert "consistent_random" in stderr
        # A partition holds ~60 segments; a lookup reads a handful of objects per record.
        assert gets < 3 * len(found) + 60, stderr

    # An absent key: nothing, and no segment read to say so.
    settled(s3)
    found, gets, stderr = cli_find(s3, "customers", "--key", "nobody", "--all-partitions")
    assert found == []
    assert s3.proxy.count("GET", ".log") == 0, stderr
    assert re.search(r"\d+ in key filters", stderr) and " 0 in key filters" not in stderr, stderr

    # The same through the running broker's admin API.
    query = urllib.parse.urlencode({"topic": "customers", "key": "customer-7"})
    answer = admin_json(silt, f"/v1/archive/find?{query}")
    assert answer["tier"] == "archive" and not answer["truncated"]
    assert as_rows(answer["records"]) == sorted(by_key[b"customer-7"])
    assert any("consistent_random" in p["why"] for p in answer["partitions"])
    # A limit: the first records in offset order, the rest not read.
    query = urllib.parse.urlencode({"topic": "customers", "key": "customer-7", "limit": 3})
    limited = admin_json(silt, f"/v1/archive/find?{query}")
    assert limited["truncated"] and limited["records"] == answer["records"][:3]
    assert limited["partitions"][-1]["stopped_at_limit"] and limited["partitions"][-1]["found"] == 4
    # Time bounds: only records stamped in [from, to).
    query = urllib.parse.urlencode({"topic": "customers", "key": "customer-7", "all_partitions": "true", "from": T0 + 1000, "to": T0 + 2000})
    answer = admin_json(silt, f"/v1/archive/find?{query}")
    offsets_in_time = [r for r in answer["records"] if T0 + 1000 <= r["timestamp"] < T0 + 2000]
    assert answer["records"] == offsets_in_time and len(answer["records"]) == 1000 // KEYS


def test_a_topic_archived_without_a_key_index_is_searched_whole_then_indexed(silt_factory, s3):
    silt = tiered_silt(silt_factory, s3)
    by_key = produce_keyed(silt, "plain", TOPIC_CONFIG)
    key = b"customer-3"
    found, _, stderr = cli_find(s3, "plain", "--key", key.decode(), "--all-partitions")
    assert as_rows(found) == sorted(by_key[key])
    assert "have no key index" in stderr and "silt archive index plain" in stderr

    done = silt_cli("archive", "--archive", s3.url(), "index", "plain", env=s3.env)
    assert done.returncode == 0, done.stderr
    assert "segments indexed" in done.stdout

    settled(s3)
    found, _, stderr = cli_find(s3, "plain", "--key", key.decode(), "--all-partitions")
    assert as_rows(found) == sorted(by_key[key])
    assert "have no key index" not in stderr, stderr
    # Reads now touch only the segments holding the key's records.
    assert s3.proxy.count("GET", ".log") <= len(found), stderr


def test_bad_lookups_are_named(silt_factory, s3):
    silt = tiered_silt(silt_factory, s3)
    create_topic(silt.bootstrap, "few", partitions=2, config=TOPIC_CONFIG)
    done = silt_cli("archive", "--archive", s3.url(), "find", "no-such-topic", "--key", "k", env=s3.env)
    assert done.returncode != 0 and "no-such-topic" in done.stderr
    done = silt_cli("archive", "--archive", s3.url(), "find", "few", "--key-hex", "zz", env=s3.env)
    assert done.returncode != 0 and "hexadecimal" in done.stderr
    import urllib.error
    import urllib.request

    for query, why in [
        ({"topic": "nope", "key": "k"}, "does not exist"),
        ({"topic": "few", "key": "k", "partition": "9"}, "not 9"),
        ({"topic": "few"}, "key"),
    ]:
        url = f"{silt.admin}/v1/archive/find?{urllib.parse.urlencode(query)}"
        try:
            urllib.request.urlopen(url, timeout=10)
            raise AssertionError(f"{query} answered 200")
        except urllib.error.HTTPError as e:
            assert e.code in (400, 404) and why in json.loads(e.read())["error"], query
