"""Replication, black-box: three real `silt serve` nodes, real clients, real faults.

Each test runs an idempotent librdkafka producer (acks=all) in the background, injects a
fault (kill -9 of a leader, SIGSTOP, a node cut off from the others by the RPC fault proxy,
a full restart), and then reads every partition back: every acknowledged record must be
there once, byte-exact, at the offset it was acknowledged at, in the order it was sent.
Fail-over times are printed, not asserted (speed is for bench/replication.py).
"""

import os
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import run_node, wait_for
from helpers import kcat

# At least 20 by the bar; an environment variable shortens it for a quick local run.
KILL_ROUNDS = int(os.environ.get("SILT_KILL_ROUNDS", "20"))


def create_replicated(bootstrap, name, partitions, replication=3):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=replication)])
    futures[name].result(30)


class Producing:
    """An idempotent librdkafka producer sending numbered values ("<partition>:<n>") to every
    partition of a topic, round after round, until stopped; keeps what was acknowledged."""

    def __init__(self, bootstrap, topic, partitions, pace=0.004):
        self.topic = topic
        self.partitions = list(partitions)
        self.acked = {p: [] for p in self.partitions}  # (offset, value, acked at)
        self.errors = []
        self.pace = pace
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "message.timeout.ms": 120000,
            "retry.backoff.ms": 50,
            "topic.metadata.refresh.interval.ms": 1000,
            # A paused leader holds requests without answering: give up on them sooner than
            # the default 30 s (the retry goes to the new leader).
            "request.timeout.ms": 5000,
        })
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _on_delivery(self, err, msg):
        with self._lock:
            if err is not None:
                self.errors.append(err)
            else:
                self.acked[msg.partition()].append((msg.offset(), msg.value(), time.monotonic()))

    def _run(self):
        n = 0
        while not self._stop.is_set():
            for p in self.partitions:
                value = f"{p}:{n:09d}".encode()
                while True:
                    try:
                        self.producer.produce(self.topic, value=value, partition=p, on_delivery=self._on_delivery)
                        break
                    except BufferError:
                        self.producer.poll(0.05)
            n += 1
            self.producer.poll(0)
            time.sleep(self.pace)
        self.producer.flush(120)

    def count(self, partition=None):
        with self._lock:
            if partition is None:
                return sum(len(a) for a in self.acked.values())
            return len(self.acked[partition])

    def wait_progress(self, partition, more=50, timeout=60):
        """Waits until `more` further records of `partition` are acknowledged; returns when
        the first of them was."""
        start = self.count(partition)
        wait_for(lambda: self.count(partition) >= start + more, timeout=timeout, interval=0.02,
                 what=f"{more} more acknowledgements on partition {partition}")
        with self._lock:
            return self.acked[partition][start][2]

    def stop(self):
        self._stop.set()
        self.thread.join(180)
        assert not self.thread.is_alive(), "the producer did not finish flushing"


def read_all(bootstrap, topic, partitions):
    """Every record of each partition from offset 0 to its high watermark: partition ->
    [(offset, value)]."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "silt-tests-unused", "enable.auto.commit": False})

    def end_of(p):
        # librdkafka's watermark query retries neither NOT_LEADER_OR_FOLLOWER (a leadership
        # may be moving back to its preferred replica) nor OFFSET_NOT_AVAILABLE (a new leader
        # has not committed in its term yet, KIP-207): ask again.
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] + 1
        except KafkaException as e:
            assert e.args[0].retriable() or e.args[0].code() in (
                KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.OFFSET_NOT_AVAILABLE), e
            return None

    ends = {p: wait_for(lambda p=p: end_of(p), timeout=30, interval=0.2, what=f"end of {topic}/{p}") - 1 for p in partitions}
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    out = {p: [] for p in partitions}

    def behind():
        # The position, not the last record: a log may end with control batches (a new
        # leader's first entry), which consumers skip.
        positions = consumer.position([TopicPartition(topic, p) for p in partitions])
        return [tp.partition for tp in positions if tp.offset < ends[tp.partition]]

    deadline = time.monotonic() + 120
    try:
        while behind():
            assert time.monotonic() < deadline, f"still behind on {behind()} of {ends}"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out[msg.partition()].append((msg.offset(), msg.value()))
    finally:
        consumer.close()
    return out


def check_every_acknowledged_record(producing, bootstrap):
    """Every acknowledged record is in the log once, at its offset, byte-exact, in order."""
    assert not producing.errors, producing.errors[:5]
    read = read_all(bootstrap, producing.topic, producing.partitions)
    for p in producing.partitions:
        records = read[p]
        values = [v for _, v in records]
        assert len(values) == len(set(values)), f"partition {p}: duplicates"
        numbers = [int(v.split(b":")[1]) for v in values]
        assert numbers == sorted(numbers), f"partition {p}: out of order"
        at = dict(records)
        acked = producing.acked[p]
        assert acked, f"nothing acknowledged on partition {p}"
        for offset, value, _ in acked:
            assert at.get(offset) == value, f"partition {p}: acknowledged {value!r} at {offset}, found {at.get(offset)!r}"
        # Nothing the producer sent was lost in between: the numbers are dense up to the
        # last acknowledged one.
        last = int(acked[-1][1].split(b":")[1])
        assert numbers[: last + 1] == list(range(last + 1)), f"partition {p}: a gap before {last}"


def test_a_replicated_topic_lists_its_replicas_and_serves_every_client(cluster_factory):
    cluster = cluster_factory()
    create_replicated(cluster.bootstrap, "basic", 3)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    # The broker that created the topic waited (a little) for leaders; the one Metadata asks
    # may learn of the last election a moment later (LEADER_NOT_AVAILABLE meanwhile, as Kafka).
    metadata = wait_for(lambda: (lambda m: m if all(p.leader >= 0 for p in m.topics["basic"].partitions.values()) else None)(
        admin.list_topics("basic", timeout=10)), timeout=30, what="every partition of basic led")
    assert sorted(metadata.brokers) == [0, 1, 2]
    partitions = metadata.topics["basic"].partitions
    assert sorted(partitions) == [0, 1, 2]
    for p in partitions.values():
        assert sorted(p.replicas) == [0, 1, 2]
    # Preferred leaders: one partition per node.
    assert sorted(p.leader for p in partitions.values()) == [0, 1, 2]
    cluster.wait_in_sync("basic", [0, 1, 2])
    # kcat and kafkajs through the cluster.
    kcat(cluster.bootstrap, "-P", "-t", "basic", "-p", "1", input=b"one\ntwo\nthree\n")
    out = kcat(cluster.bootstrap, "-C", "-t", "basic", "-p", "1", "-o", "beginning", "-e", "-f", "%s\n")
    assert out.split() == [b"one", b"two", b"three"]
    sent = run_node("produce.js", {
        "brokers": cluster.bootstrap.split(","), "topic": "basic", "idempotent": True,
        "messages": [{"value": "aGk=", "partition": 2}] * 10,
    })
    assert sent["count"] == 10


def test_every_acknowledged_record_survives_twenty_leader_kills(cluster_factory):
    cluster = cluster_factory()
    create_replicated(cluster.bootstrap, "kills", 2)
    cluster.wait_in_sync("kills", [0, 1])
    producing = Producing(cluster.bootstrap, "kills", [0, 1])
    producing.wait_progress(0)
    failovers = []
    for round_ in range(KILL_ROUNDS):
        partition = round_ % 2
        victim = cluster.leader("kills", partition)
        producing.wait_progress(partition, more=20)
        killed_at = time.monotonic()
        cluster.nodes[victim].kill()
        resumed_at = producing.wait_progress(partition, more=20)
        failovers.append(resumed_at - killed_at)
        cluster.nodes[victim].start()
        cluster.wait_in_sync("kills", [0, 1])
    producing.stop()
    print(f"fail-over (kill -9 of the leader until the next acknowledgement) over {len(failovers)} kills: "
          f"min {min(failovers):.2f}s, max {max(failovers):.2f}s, mean {sum(failovers) / len(failovers):.2f}s")
    check_every_acknowledged_record(producing, cluster.bootstrap)


def test_a_paused_leader_is_replaced_and_rejoins_as_a_follower(cluster_factory):
    cluster = cluster_factory()
    create_replicated(cluster.bootstrap, "paused", 1)
    cluster.wait_in_sync("paused", [0])
    producing = Producing(cluster.bootstrap, "paused", [0])
    producing.wait_progress(0)
    victim = cluster.leader("paused", 0)
    cluster.nodes[victim].pause()
    cluster.paused = {victim}
    producing.wait_progress(0, more=200, timeout=90)
    assert cluster.leader("paused", 0) != victim
    cluster.nodes[victim].resume()
    cluster.paused = set()
    cluster.wait_in_sync("paused", [0])
    producing.wait_progress(0, more=50)
    producing.stop()
    check_every_acknowledged_record(producing, cluster.bootstrap)


def test_a_leader_cut_off_from_the_others_loses_nothing_acknowledged(cluster_factory):
    cluster = cluster_factory()
    create_replicated(cluster.bootstrap, "cut", 1)
    cluster.wait_in_sync("cut", [0])
    producing = Producing(cluster.bootstrap, "cut", [0])
    producing.wait_progress(0)
    victim = cluster.leader("cut", 0)
    cluster.isolate(victim)
    # The majority side elects a leader and takes the writes; the cut-off node refuses them
    # (it hears no majority), so the producer moves over.
    producing.wait_progress(0, more=200, timeout=90)
    others = [s for i, s in cluster.replica_states("cut", 0).items() if i != victim]
    assert any(s["role"] == "leader" for s in others), others
    cluster.heal()
    cluster.wait_in_sync("cut", [0])
    producing.wait_progress(0, more=50)
    producing.stop()
    check_every_acknowledged_record(producing, cluster.bootstrap)


RETRIABLE_GROUP_ERRORS = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                          KafkaError.COORDINATOR_NOT_AVAILABLE)


def group_consumer(bootstrap, group):
    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
    })


def consume_and_commit(bootstrap, topic, group, count, partitions=(0, 1)):
    """Consumes at least `count` records of each partition in group `group`, committing
    synchronously every 50; returns the committed offsets."""
    consumer = group_consumer(bootstrap, group)
    consumer.subscribe([topic])
    got = {p: 0 for p in partitions}
    deadline = time.monotonic() + 90
    since_commit = 0
    while min(got.values()) < count:
        assert time.monotonic() < deadline, f"consumed {got}, wanted {count} of each"
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        got[msg.partition()] += 1
        since_commit += 1
        if since_commit == 50:
            consumer.commit(asynchronous=False)
            since_commit = 0
    if since_commit:
        consumer.commit(asynchronous=False)
    committed = wait_for(lambda: committed_offsets(consumer, topic), timeout=60, what="the committed offsets")
    consumer.close()
    return committed


def committed_offsets(consumer, topic, partitions=(0, 1)):
    """The group's committed offsets, or None while its coordinator moves (NOT_COORDINATOR
    and the like are retriable: Kafka answers them too while a coordinator fails over or
    goes back to its preferred broker, and librdkafka's committed() hands them back)."""
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
    except KafkaException as e:
        assert e.args[0].retriable() or e.args[0].code() in RETRIABLE_GROUP_ERRORS, e
        return None
    return {tp.partition: tp.offset for tp in found}


def test_group_offsets_survive_the_coordinator_kill_and_a_full_restart(cluster_factory):
    cluster = cluster_factory()
    create_replicated(cluster.bootstrap, "grouped", 2)
    cluster.wait_in_sync("grouped", [0, 1])
    producing = Producing(cluster.bootstrap, "grouped", [0, 1], pace=0.001)
    producing.wait_progress(1, more=600)
    producing.stop()
    committed = consume_and_commit(cluster.bootstrap, "grouped", "survivors", 250)
    assert min(committed.values()) >= 250, committed
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    described = admin.describe_consumer_groups(["survivors"])["survivors"].result(30)
    coordinator = described.coordinator.id
    cluster.nodes[coordinator].kill()
    # Another node takes the group over with its offsets.
    consumer = group_consumer(cluster.bootstrap, "survivors")
    assert wait_for(lambda: committed_offsets(consumer, "grouped") == committed, timeout=60,
                    what="the committed offsets from the new coordinator")
    consumer.close()
    cluster.nodes[coordinator].start()
    cluster.wait_in_sync("grouped", [0, 1])
    # Every node killed at once, then started again.
    for node in cluster.nodes:
        node.kill()
    cluster.start()
    consumer = group_consumer(cluster.bootstrap, "survivors")
    assert wait_for(lambda: committed_offsets(consumer, "grouped") == committed, timeout=60,
                    what="the committed offsets after a full restart")
    # The group resumes where it left off: its first record of each partition is the first
    # record at or after the committed offset (a new leader's control batches are skipped).
    check_every_acknowledged_record(producing, cluster.bootstrap)
    after = Producer({"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True})
    for p in (0, 1):
        after.produce("grouped", value=f"after-{p}".encode(), partition=p)
    assert after.flush(60) == 0
    logs = read_all(cluster.bootstrap, "grouped", [0, 1])
    expected = {p: next(r for r in logs[p] if r[0] >= committed[p]) for p in (0, 1)}
    consumer.subscribe(["grouped"])
    first = {}
    deadline = time.monotonic() + 60
    while len(first) < 2:
        assert time.monotonic() < deadline, first
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            first.setdefault(msg.partition(), (msg.offset(), msg.value()))
    consumer.close()
    assert first == expected


def test_clients_follow_a_leader_change_without_errors(cluster_factory):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP

    cluster = cluster_factory()
    create_replicated(cluster.bootstrap, "follow", 1)
    cluster.wait_in_sync("follow", [0])
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap.split(","), acks="all", retries=50,
                             retry_backoff_ms=100, max_in_flight_requests_per_connection=1, linger_ms=5)
    futures = [producer.send("follow", value=f"kp-{i}".encode(), partition=0) for i in range(200)]
    producer.flush(30)
    victim = cluster.leader("follow", 0)
    cluster.nodes[victim].kill()
    # kafka-python: sends across the leader change; every future resolves without an error.
    futures += [producer.send("follow", value=f"kp-{i}".encode(), partition=0) for i in range(200, 400)]
    producer.flush(60)
    offsets = [f.get(timeout=60).offset for f in futures]
    assert len(set(offsets)) == 400
    producer.close()
    # kafkajs (its default retries) and kcat on the new leader. kafkajs is given the live
    # brokers: it picks its seed broker at random and gives up on the first connection error
    # if it draws the dead one twice, before it has heard of any leader.
    live = ",".join(n.bootstrap for i, n in enumerate(cluster.nodes) if i != victim)
    run_node("produce.js", {"brokers": live.split(","), "topic": "follow", "idempotent": True,
                            "messages": [{"value": "anM=", "partition": 0}] * 50})
    kcat(cluster.bootstrap, "-P", "-t", "follow", "-p", "0", input=b"kcat-1\nkcat-2\n")
    # Once unheard for the broker session timeout (9 s, as Kafka's), the dead broker drops
    # out of Metadata's broker list (replica lists still name it).
    admin = AdminClient({"bootstrap.servers": live})
    wait_for(lambda: sorted(admin.list_topics(timeout=10).brokers) == sorted(set(range(3)) - {victim}),
             timeout=30, interval=0.5, what=f"broker {victim} gone from Metadata")
    cluster.nodes[victim].start()
    cluster.wait_in_sync("follow", [0])
    # kafka-python reads it all back, in order.
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap.split(","), enable_auto_commit=False)
    tp = KTP("follow", 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    values = []
    deadline = time.monotonic() + 60
    while len(values) < 452:
        assert time.monotonic() < deadline, len(values)
        for records in consumer.poll(timeout_ms=500).values():
            values += [r.value for r in records]
    consumer.close()
    assert values[:400] == [f"kp-{i}".encode() for i in range(400)]
    assert values[400:450] == [b"js"] * 50
    assert values[450:] == [b"kcat-1", b"kcat-2"]
