"""Tiered storage in a replicated cluster, black-box: three real nodes share one archive;
leaders are killed and paused while a producer runs and segments are uploaded. Only the
leader of the moment writes a partition's manifest, a deposed leader never stalls it, and
every acknowledged record stays readable from offset 0 through the archive."""

import json
import urllib.request

from confluent_kafka.admin import AdminClient, NewTopic

from conftest import silt_cli, wait_for
from test_replication import Producing, check_every_acknowledged_record

TOPIC = "tiered-rf3"


def partition_status(node, topic, partition=0):
    with urllib.request.urlopen(f"{node.admin}/v1/status", timeout=5) as r:
        status = json.load(r)
    for t in status["topics"]:
        if t["name"] == topic:
            for p in t["partitions"]:
                if p["partition"] == partition:
                    return p
    return None


def leader_archive(cluster):
    """The leader's view of the partition's archive."""
    leader = cluster.leader(TOPIC, 0)
    return partition_status(cluster.nodes[leader], TOPIC)["archive"]


def archived(cluster):
    return leader_archive(cluster)["archived_next_offset"] or 0


def test_leader_changes_during_uploads_leave_one_archive_readable_from_zero(cluster_factory, tmp_path):
    bucket = tmp_path / "bucket"
    cluster = cluster_factory(3, extra_args=(
        "--archive", str(bucket),
        "--set", "archive_check_interval_ms=200",
        "--set", "archive_upload_interval_ms=500",
        "--set", "retention_check_interval_ms=500",
    ))
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=3, config={
        "segment.bytes": "32768",
        # Local segments go as soon as the archive holds them: reads from 0 go to the bucket.
        "retention.local.target.ms": "1",
    })])[TOPIC].result(30)
    cluster.wait_in_sync(TOPIC, [0])
    producing = Producing(cluster.bootstrap, TOPIC, [0], pace=0.002)
    producing.wait_progress(0)
    terms = set()
    for round_ in range(4):
        before = archived(cluster)
        wait_for(lambda: archived(cluster) > before, timeout=60, what="the archive to advance")
        terms.add(leader_archive(cluster)["root_term"])
        victim = cluster.leader(TOPIC, 0)
        if round_ % 2:
            # A paused leader: replaced meanwhile, it wakes up believing it still leads,
            # with a manifest loaded at its old term.
            cluster.nodes[victim].pause()
            cluster.paused = {victim}
            producing.wait_progress(0, more=200, timeout=90)
            cluster.nodes[victim].resume()
            cluster.paused = set()
        else:
            cluster.nodes[victim].kill()
            producing.wait_progress(0, more=200, timeout=90)
            cluster.nodes[victim].start()
        cluster.wait_in_sync(TOPIC, [0])
    # The leadership goes back to its preferred replica, which may be a node that was
    # fenced as a deposed leader: leading again in a later term, it uploads again.
    before = archived(cluster)
    wait_for(lambda: archived(cluster) > before, timeout=60, what="the archive to advance after the last change")
    producing.stop()
    terms.add(leader_archive(cluster)["root_term"])
    assert len(terms) >= 3, f"roots written at terms {terms}: the writers did not change with the leaders"

    # Everything acknowledged reaches the archive, and the archive is whole.
    high_watermark = partition_status(cluster.nodes[cluster.leader(TOPIC, 0)], TOPIC)["high_watermark"]
    wait_for(lambda: archived(cluster) >= high_watermark, timeout=60, what=f"the archive to reach {high_watermark}")
    assert not leader_archive(cluster)["fenced"]
    # The listing names who wrote the last root (a leader, at its term), as the brokers see it.
    listing = silt_cli("archive", "ls", TOPIC, "--archive", str(bucket))
    assert listing.returncode == 0, listing.stderr
    [row] = [line.split() for line in listing.stdout.splitlines() if line.startswith(f"{TOPIC} ")]
    seen = leader_archive(cluster)
    writer_node = int(seen["root_writer"].split("/")[1])
    assert (int(row[-2]), row[-1]) == (seen["root_term"], "/".join(seen["root_writer"].split("/")[:2])), row
    # That writer led the partition at that term.
    assert seen["root_term"] > 0 and writer_node in range(3)
    verify = silt_cli("archive", "verify", "--archive", str(bucket))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "all good" in verify.stdout, verify.stdout

    # Every replica learned what the archive holds through the partition's log (the
    # leader's pointer), trimmed only below it, and reads from 0 come from the bucket.
    wait_for(lambda: all((partition_status(n, TOPIC)["archive"]["replicated_pointer"] or 0) >= high_watermark
                         for n in cluster.nodes), timeout=60, what="the archive pointer on every replica")
    for node in cluster.nodes:
        p = partition_status(node, TOPIC)
        assert p["local_start_offset"] <= p["archive"]["replicated_pointer"], p
        assert p["local_start_offset"] <= (p["archive"]["archived_next_offset"] or 0), p
    wait_for(lambda: partition_status(cluster.nodes[cluster.leader(TOPIC, 0)], TOPIC)["local_start_offset"] > 0,
             timeout=60, what="the leader's local log to be trimmed")
    check_every_acknowledged_record(producing, cluster.bootstrap)
