"""Archive reads through a store that misbehaves the way real ones do, injected by the
StoreProxy between silt and moto: responses that stall past the read timeout, a storm of
503s, bodies cut off mid-transfer. Each time the consumer gets every record, byte-exact and in
order, and silt neither serves part of a batch nor answers a storm with one of its own."""

import threading
import time

from conftest import metric
from helpers import confluent_read
from test_historical import produce_archived, tiered_silt

READ_TIMEOUT = ["--set", "archive_read_timeout_ms=1000"]


def rows(expected):
    """Partition 0's (offset, value) pairs."""
    return [(o, v) for o, _, v, _, _ in expected[0]]


def read_all(silt, topic, count, timeout=120):
    got = confluent_read(silt.bootstrap, topic, [0], count, start=0, timeout=timeout)
    return [(m.offset(), m.value()) for m in got]


def archived_partition(silt_factory, s3, topic):
    """A silt reading its archive through the proxy with a 1 s read timeout, and one partition
    of `topic` that only the archive holds: (silt, its records as produced)."""
    silt = tiered_silt(silt_factory, s3, *READ_TIMEOUT)
    return silt, rows(produce_archived(silt, topic, 1500, partitions_count=1))


def test_a_stall_longer_than_the_read_timeout_is_retried_and_the_replay_completes(silt_factory, s3):
    silt, expected = archived_partition(silt_factory, s3, "stalls")
    s3.proxy.stall(seconds=3, count=2, path_contains=".log")
    assert read_all(silt, "stalls", len(expected)) == expected
    assert s3.proxy.faults_applied["stall"] == 2
    # The stalled reads timed out (a retriable error to the consumer), not waited out.
    assert metric(silt, "silt_archive_read_failures_total") > 0


def test_a_503_storm_is_retried_with_backoff_not_with_a_storm_of_our_own(silt_factory, s3):
    silt, expected = archived_partition(silt_factory, s3, "storm")
    storm = 4.0
    s3.proxy.fail(count=None, seconds=storm, status=503, path_contains=".log")
    result = {}

    def consume():
        result["got"] = read_all(silt, "storm", len(expected))

    reader = threading.Thread(target=consume)
    reader.start()
    time.sleep(storm)
    refused = s3.proxy.faults_applied["fail"]
    reader.join(150)
    assert result.get("got") == expected
    # object_store backs off between attempts, each read gives up at its timeout and the
    # consumer backs off before it asks again: a handful of GETs a second, not hundreds.
    assert 0 < refused <= 15 * storm, f"{refused} GETs in a {storm} s storm"


def test_a_body_cut_mid_transfer_is_never_served_in_part(silt_factory, s3):
    silt, expected = archived_partition(silt_factory, s3, "cuts")
    s3.proxy.cut(after_bytes=3000, count=3, path_contains=".log")
    assert read_all(silt, "cuts", len(expected)) == expected
    assert s3.proxy.faults_applied["cut"] == 3
    # A short body is a failed read, retried, not a damaged object.
    assert metric(silt, "silt_archive_corrupt_batches_total") == 0
    assert "failed its checks" not in silt.log_text()


def test_one_consumer_replays_32_archived_partitions_side_by_side(silt_factory, s3):
    silt = tiered_silt(silt_factory, s3, "--set", "archive_prefetch_chunks=4")
    expected = produce_archived(silt, "wide", 32 * 1200, partitions_count=32)
    total = sum(len(v) for v in expected.values())
    got = confluent_read(silt.bootstrap, "wide", list(range(32)), total, start=0, timeout=180)
    by_partition = {p: [] for p in range(32)}
    for m in got:
        by_partition[m.partition()].append((m.offset(), m.value()))
    assert by_partition == {p: [(o, v) for o, _, v, _, _ in rows_] for p, rows_ in expected.items()}
    # Read ahead took part: some chunks were on their way before the consumer asked.
    assert metric(silt, "silt_archive_prefetch_gets_total") > 0
    assert metric(silt, "silt_archive_gets_per_gib_replayed") > 0
    # Every record came from the archive, so the bytes sent from it hold at least their values.
    values = sum(len(v) for rows_ in expected.values() for _, _, v, _, _ in rows_)
    assert metric(silt, "silt_archive_sent_bytes_total") >= values
