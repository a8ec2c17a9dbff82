"""Operating a replicated cluster, black-box: a rolling restart, moving a partition to
another broker, decommissioning a broker, all under a running idempotent producer whose
every acknowledged record must survive (see test_replication.py for the checks)."""

import json
import os
import time
import urllib.request

from confluent_kafka.admin import AdminClient, NewTopic

from conftest import silt_cli, wait_for
from test_replication import Producing, check_every_acknowledged_record, create_replicated


def metrics_text(node):
    with urllib.request.urlopen(f"{node.admin}/metrics", timeout=10) as r:
        return r.read().decode()


def status(node):
    with urllib.request.urlopen(f"{node.admin}/v1/status", timeout=10) as r:
        return json.load(r)


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
    # /metrics: one node leads each partition, with all three replicas in sync (once the
    # leaderships handed back to the restarted node have landed).
    def leaders(p):
        labels = f'{{topic="rolling",partition="{p}"}}'
        return [i for i, n in enumerate(cluster.nodes) if f"silt_partition_leader{labels} 1" in metrics_text(n)]

    for p in (0, 1, 2):
        wait_for(lambda: len(leaders(p)) == 1, timeout=30, what=f"one leader of partition {p}")
        labels = f'{{topic="rolling",partition="{p}"}}'
        assert f"silt_partition_in_sync_replicas{labels} 3" in metrics_text(cluster.nodes[leaders(p)[0]])
    assert "silt_cluster_broker_alive{broker=\"2\"} 1" in metrics_text(cluster.nodes[0])


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
    # Broker 3 was a seed, so a voter of the controller: its vote is gone with it.
    wait_for(lambda: status(cluster.nodes[0])["cluster"]["controller_voters"] == [0, 1, 2], timeout=30,
             what="the controller's voters to leave out broker 3")
    cluster.nodes[3].stop()
    for p in (0, 1):
        producing.wait_progress(p, more=50)
    producing.stop()
    check_every_acknowledged_record(producing, cluster.bootstrap)
    # Two of the three voters left are a majority: with broker 3 still counted, two of four
    # would not be, and the controller would take no change.
    cluster.nodes[2].stop()
    admin = AdminClient({"bootstrap.servers": cluster.nodes[0].bootstrap})
    created = admin.create_topics([NewTopic("after-decommission", num_partitions=1, replication_factor=1)])
    created["after-decommission"].result(30)


def test_delete_records_holds_on_every_replica_after_a_leader_change(cluster_factory):
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

    cluster = cluster_factory()
    create_replicated(cluster.bootstrap, "trimmed", 1)
    cluster.wait_in_sync("trimmed", [0])
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    offsets = {}
    for i in range(100):
        producer.produce("trimmed", value=f"t{i}".encode(), partition=0,
                         on_delivery=lambda err, msg: offsets.setdefault(msg.value(), msg.offset()))
    assert producer.flush(30) == 0
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    at = offsets[b"t60"]
    cut = TopicPartition("trimmed", 0, at)

    def delete():
        # The leadership may be handed to the preferred replica meanwhile: a request that
        # reached the old leader is refused as Kafka refuses it, and asked again.
        try:
            return admin.delete_records([cut])[cut].result(30).low_watermark
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.NOT_LEADER_FOR_PARTITION, e
            return None

    assert wait_for(delete, timeout=60, what="DeleteRecords on the leader") == at
    # Another replica takes over: the records before 60 stay gone there too.
    victim = cluster.leader("trimmed", 0)
    cluster.nodes[victim].kill()
    assert cluster.leader("trimmed", 0) != victim
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "unused", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "topic.metadata.refresh.interval.ms": 1000})

    def low():
        try:
            return consumer.get_watermark_offsets(TopicPartition("trimmed", 0), timeout=10)[0] + 1
        except KafkaException as e:
            # The killed leader's requests time out until the client has the new one.
            assert e.args[0].retriable() or e.args[0].code() in (
                KafkaError._TIMED_OUT, KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.OFFSET_NOT_AVAILABLE), e
            return None

    assert wait_for(low, timeout=60, what="the new leader's low watermark") - 1 == at
    consumer.assign([TopicPartition("trimmed", 0, 0)])
    first = None
    deadline = time.monotonic() + 60
    while first is None:
        assert time.monotonic() < deadline
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            first = msg
    assert first.value() == b"t60", (first.offset(), first.value())
    consumer.close()


def consecutive_free_ports(count, tries=50):
    """A base port with `count` free ports from it (the dev cluster offsets ports per node)."""
    import random
    import socket

    for _ in range(tries):
        base = random.randrange(20000, 60000)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no run of free ports")


def test_a_development_cluster_starts_serves_adds_a_node_and_stops(tmp_path):
    from helpers import kcat

    directory = tmp_path / "dev"
    ports = [str(consecutive_free_ports(4)) for _ in range(3)]
    args = ["--dir", str(directory), "--kafka-port", ports[0], "--admin-port", ports[1], "--rpc-port", ports[2]]
    try:
        out = silt_cli("cluster", "start", "-n", "3", *args, timeout=180)
        assert out.returncode == 0, out.stderr
        brokers = ",".join(f"127.0.0.1:{int(ports[0]) + i}" for i in range(3))
        assert f"export SILT_BROKERS={brokers}" in out.stdout, out.stdout
        state = json.loads((directory / "cluster.json").read_text())
        pids = [n["pid"] for n in state["nodes"]]
        assert len(pids) == 3 and all(pids)
        # The printed line is what the CLI reads.
        env = {"SILT_BROKERS": brokers}
        out = silt_cli("topic", "create", "dev", "-p", "3", "-r", "3", env=env)
        assert out.returncode == 0, out.stderr
        kcat(brokers, "-P", "-t", "dev", "-p", "0", input=b"a\nb\n")
        assert kcat(brokers, "-C", "-t", "dev", "-p", "0", "-o", "beginning", "-e", "-f", "%s\n").split() == [b"a", b"b"]
        out = silt_cli("cluster", "status", "--dir", str(directory))
        assert out.returncode == 0, out.stderr
        rows = [line.split() for line in out.stdout.splitlines()[1:4]]
        assert [r[1] for r in rows] == ["running"] * 3, out.stdout
        # A fourth node joins the running cluster and is listed as a broker.
        out = silt_cli("cluster", "add-node", "--dir", str(directory), timeout=120)
        assert out.returncode == 0, out.stderr
        out = silt_cli("cluster", "brokers", "--dir", str(directory))
        assert out.returncode == 0, out.stderr
        assert len([line for line in out.stdout.splitlines() if line.split()[:1] in (["0"], ["1"], ["2"], ["3"])]) == 4, out.stdout
        pids = [n["pid"] for n in json.loads((directory / "cluster.json").read_text())["nodes"]]
        assert len(pids) == 4
    finally:
        out = silt_cli("cluster", "stop", "--dir", str(directory), timeout=180)
    assert out.returncode == 0, out.stderr
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower(), f"node {pid} still runs"
    out = silt_cli("cluster", "purge", "--dir", str(directory))
    assert out.returncode == 0, out.stderr
    assert not directory.exists()


def test_a_cluster_of_one_grows_a_controller_that_outlives_its_first_node(silt_factory):
    """`silt serve` alone is a cluster of one; nodes that join it get a vote once three serve,
    so the node it started from may then go."""
    first = silt_factory("first", ["--node-id", "0"])
    seeds = f"0@127.0.0.1:{first.rpc_port}"
    joined = [silt_factory(f"joined-{i}", ["--node-id", str(i), "--seeds", seeds]) for i in (1, 2)]
    # Done, not under way: while the voters change, the old ones ({0}) must agree too.
    wait_for(lambda: (lambda c: c["controller_voters"] == [0, 1, 2] and not c["controller_voters_changing"])(
        status(first)["cluster"]), timeout=60, what="the controller to grow to three voters")
    assert "silt_cluster_controller_voters 3" in metrics_text(joined[0])
    assert first.stop() == 0
    # Two voters of three carry on: a topic can still be made.
    admin = AdminClient({"bootstrap.servers": joined[0].bootstrap})
    admin.create_topics([NewTopic("after-the-first", num_partitions=1, replication_factor=2)])[
        "after-the-first"].result(30)
    assert "after-the-first" in admin.list_topics(timeout=10).topics
