"""Operating a replicated cluster, black-box: a rolling restart, moving a partition to
another broker, decommissioning a broker, all under a running idempotent producer whose
every acknowledged record must survive (see test_replication.py for the checks)."""

import json
import urllib.request

from confluent_kafka.admin import AdminClient

from conftest import silt_cli, wait_for
from test_replication import Producing, check_every_acknowledged_record, create_replicated


def replicas_of(bootstrap, topic):
    """partition -> sorted replicas, as Metadata gives them."""
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return {p.id: sorted(p.replicas) for p in metadata.topics[topic].partitions.values()}


def test_a_rolling_restart_hands_leaderships_over_first_and_loses_nothing(cluster_factory):
    cluster = cluster_factory()
    create_replicated(cluster.bootstrap, "rolling", 3)
    cluster.wait_in_sync("rolling", [0, 1, 2])
    producing = Producing(cluster.bootstrap, "rolling", [0, 1, 2])
    producing.wait_progress(0)
    for i, node in enumerate(cluster.nodes):
        before = len(node.lines)
        # SIGTERM: the node drains (hands every leadership over) before it stops.
        assert node.stop() == 0
        said = "".join(node.lines[before:])
        assert "drained: this node leads nothing" in said, said[-2000:]
        # The other two keep taking writes on every partition.
        for p in (0, 1, 2):
            producing.wait_progress(p, more=20)
        node.start()
        cluster.wait_in_sync("rolling", [0, 1, 2])
    producing.stop()
    # Leaderships moved ahead of each stop: the producer never saw an error, and every
    # acknowledged record is there once, in order.
    check_every_acknowledged_record(producing, cluster.bootstrap)


def test_a_partition_moves_and_a_broker_is_decommissioned_under_load(cluster_factory):
    cluster = cluster_factory(4)
    create_replicated(cluster.bootstrap, "moving", 2)
    cluster.wait_in_sync("moving", [0, 1])
    producing = Producing(cluster.bootstrap, "moving", [0, 1])
    producing.wait_progress(0)
    admin = cluster.nodes[0].admin.removeprefix("http://")

    # Move partition 0 so that the broker which lacks it takes it, in place of another.
    before = replicas_of(cluster.bootstrap, "moving")[0]
    spare = next(b for b in range(4) if b not in before)
    target = [spare] + before[:2]
    out = silt_cli("cluster", "move", "--admin", admin, "--topic", "moving", "--partition", "0",
                   "--to", ",".join(map(str, target)))
    assert out.returncode == 0, out.stderr
    wait_for(lambda: replicas_of(cluster.bootstrap, "moving")[0] == sorted(target), timeout=60,
             what=f"partition 0 on {target}")
    cluster.wait_in_sync("moving", [0])
    producing.wait_progress(0, more=50)

    # Moving a partition onto a broker that does not exist names the broker.
    out = silt_cli("cluster", "move", "--admin", admin, "--topic", "moving", "--partition", "1", "--to", "1,2,9")
    assert out.returncode != 0
    assert "9" in out.stderr, out.stderr

    # Decommission broker 3: its partitions move to the others, then it is forgotten.
    out = silt_cli("cluster", "decommission", "--admin", admin, "3", timeout=180)
    assert out.returncode == 0, out.stderr
    for partition, replicas in replicas_of(cluster.bootstrap, "moving").items():
        assert 3 not in replicas and len(replicas) == 3, (partition, replicas)
    with urllib.request.urlopen(f"{cluster.nodes[0].admin}/v1/brokers", timeout=10) as r:
        brokers = json.load(r)
    assert sorted(b["id"] for b in brokers["brokers"]) == [0, 1, 2], brokers
    metadata = AdminClient({"bootstrap.servers": cluster.nodes[0].bootstrap}).list_topics(timeout=10)
    assert sorted(metadata.brokers) == [0, 1, 2]
    cluster.nodes[3].stop()
    for p in (0, 1):
        producing.wait_progress(p, more=50)
    producing.stop()
    check_every_acknowledged_record(producing, cluster.bootstrap)
