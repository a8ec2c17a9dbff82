"""Transactions with real clients: librdkafka's transactional producer commits and aborts,
read_committed consumers see exactly the committed records, a second producer instance
fences the first, and an abandoned transaction times out into an abort."""

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from conftest import admin_json, metric, silt_cli
from helpers import create_topic


def transactional(bootstrap, txn_id, **conf):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id,
        "transaction.timeout.ms": 10000,
        **conf,
    })
    producer.init_transactions(30)
    return producer


def read(bootstrap, topic, partitions, isolation, until_offset, timeout=30):
    """Values of every record of `partitions` from offset 0, reading until each partition's
    position reaches `until_offset` (markers take offsets too; a dict gives one per
    partition)."""
    until = until_offset if isinstance(until_offset, dict) else {p: until_offset for p in partitions}
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "unused",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    values = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            positions = consumer.position([TopicPartition(topic, p) for p in partitions])
            if all(tp.offset >= until[tp.partition] for tp in positions):
                break
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            values.append(msg.value())
    finally:
        consumer.close()
    return values


def partition_start(silt, topic):
    status = admin_json(silt, "/v1/status")
    return next(t for t in status["topics"] if t["name"] == topic)["partitions"][0]["local_start_offset"]


def end_offsets(bootstrap, topic, partition, isolation):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "isolation.level": isolation})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    finally:
        consumer.close()


def test_commits_are_read_and_aborts_are_skipped_by_read_committed(silt):
    create_topic(silt.bootstrap, "ledger", partitions=2)
    producer = transactional(silt.bootstrap, "ledger-writer")
    producer.begin_transaction()
    for i in range(10):
        producer.produce("ledger", b"committed-%d" % i, partition=i % 2)
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(6):
        producer.produce("ledger", b"aborted-%d" % i, partition=i % 2)
    producer.flush(30)  # written, then aborted (unflushed messages are purged, never sent)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce("ledger", b"open", partition=0)
    producer.flush(30)

    # Partition 0: 5 committed, marker, 3 aborted, marker, 1 open = offsets 0..10.
    committed = read(silt.bootstrap, "ledger", [0, 1], "read_committed", until_offset=9)
    assert sorted(committed) == sorted(b"committed-%d" % i for i in range(10))
    uncommitted = read(silt.bootstrap, "ledger", [0, 1], "read_uncommitted", until_offset=9)
    assert len([v for v in uncommitted if v.startswith(b"aborted")]) == 6
    # The open transaction holds the stable offset of partition 0 below its record.
    lso = end_offsets(silt.bootstrap, "ledger", 0, "read_committed")
    hw = end_offsets(silt.bootstrap, "ledger", 0, "read_uncommitted")
    assert lso == hw - 1, (lso, hw)
    # Operators see it: the CLI lists the id as Ongoing and names its open partition.
    listed = silt_cli("transaction", "list", "--brokers", silt.bootstrap)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("ledger-writer"))
    assert "Ongoing" in row, listed.stdout
    described = silt_cli("transaction", "describe", "ledger-writer", "--brokers", silt.bootstrap)
    assert described.returncode == 0, described.stderr
    assert "PARTITION         ledger/0" in described.stdout, described.stdout
    assert "ledger/1" not in described.stdout
    status = admin_json(silt, "/v1/status")
    assert status["transactions"]["by_state"].get("Ongoing") == 1, status["transactions"]
    partition = next(t for t in status["topics"] if t["name"] == "ledger")["partitions"][0]
    assert partition["last_stable_offset"] == lso, partition
    assert metric(silt, "silt_transactions", {"state": "Ongoing"}) == 1
    missing = silt_cli("transaction", "describe", "nobody", "--brokers", silt.bootstrap)
    assert missing.returncode != 0 and "not known" in missing.stderr, missing.stderr
    producer.commit_transaction(30)
    assert end_offsets(silt.bootstrap, "ledger", 0, "read_committed") == end_offsets(silt.bootstrap, "ledger", 0, "read_uncommitted")
    last = read(silt.bootstrap, "ledger", [0], "read_committed", until_offset=12)
    assert b"open" in last


def test_a_new_instance_fences_the_old_one_and_its_open_transaction_is_aborted(silt):
    create_topic(silt.bootstrap, "fenced")
    zombie = transactional(silt.bootstrap, "same-id")
    zombie.begin_transaction()
    zombie.produce("fenced", b"zombie")
    zombie.flush(30)
    fresh = transactional(silt.bootstrap, "same-id")
    with pytest.raises(KafkaException) as fenced:
        zombie.commit_transaction(30)
    assert fenced.value.args[0].fatal(), fenced.value
    fresh.begin_transaction()
    fresh.produce("fenced", b"fresh")
    fresh.commit_transaction(30)
    values = read(silt.bootstrap, "fenced", [0], "read_committed", until_offset=4)
    assert values == [b"fresh"]


def test_an_abandoned_transaction_times_out_into_an_abort(silt):
    create_topic(silt.bootstrap, "abandoned")
    producer = transactional(silt.bootstrap, "slow", **{"transaction.timeout.ms": 2000})
    producer.begin_transaction()
    producer.produce("abandoned", b"never committed")
    producer.flush(30)
    hw = end_offsets(silt.bootstrap, "abandoned", 0, "read_uncommitted")
    assert end_offsets(silt.bootstrap, "abandoned", 0, "read_committed") == 0
    # The coordinator aborts it after its timeout: an ABORT marker, and the stable offset moves.
    deadline = time.monotonic() + 30
    while end_offsets(silt.bootstrap, "abandoned", 0, "read_committed") <= hw - 1:
        assert time.monotonic() < deadline, "the transaction was never aborted"
        time.sleep(0.2)
    assert read(silt.bootstrap, "abandoned", [0], "read_committed", until_offset=2) == []
    # Its producer was fenced by the abort: committing now fails.
    with pytest.raises(KafkaException):
        producer.commit_transaction(10)
    # A timeout beyond the broker's transaction_max_timeout_ms (15 minutes) is refused.
    with pytest.raises(KafkaException) as refused:
        transactional(silt.bootstrap, "too-patient", **{"transaction.timeout.ms": 900_001})
    assert "timeout" in str(refused.value).lower(), refused.value


def test_a_transaction_open_across_a_crash_is_aborted_by_the_next_instance(silt):
    create_topic(silt.bootstrap, "crash")
    producer = transactional(silt.bootstrap, "crashing")
    producer.begin_transaction()
    producer.produce("crash", b"before the crash")
    producer.flush(30)
    committed = transactional(silt.bootstrap, "other")
    committed.begin_transaction()
    committed.produce("crash", b"committed")
    committed.commit_transaction(30)
    silt.restart(hard=True)  # SIGKILL: the coordinator's state comes back from its log
    # The restarted producer instance takes over its id: the open transaction is aborted.
    again = transactional(silt.bootstrap, "crashing")
    again.begin_transaction()
    again.produce("crash", b"after the crash")
    again.commit_transaction(30)
    values = read(silt.bootstrap, "crash", [0], "read_committed", until_offset=6)
    assert values == [b"committed", b"after the crash"]


def test_transactions_across_a_replicated_cluster_survive_losing_the_coordinator(cluster_factory):
    """Three nodes: a transaction's partitions are led by different nodes (markers go to each
    leader over the node network, through Raft); the coordinator's node is killed, and the
    next coordinator, loading the id from the replicated group log, fences and serves the
    producer's next instance."""
    cluster = cluster_factory(3)
    create_topic(cluster.bootstrap, "spread", partitions=3, replication_factor=3)
    cluster.wait_in_sync("spread", [0, 1, 2])
    producer = transactional(cluster.bootstrap, "spreader")
    producer.begin_transaction()
    for i in range(30):
        producer.produce("spread", b"first-%d" % i, partition=i % 3)
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(30):
        producer.produce("spread", b"dropped-%d" % i, partition=i % 3)
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    for i in range(30):
        producer.produce("spread", b"second-%d" % i, partition=i % 3)
    producer.commit_transaction(30)
    # Kill the transactional id's coordinator: its group-log partition's leader.
    described = silt_cli("transaction", "list", "--brokers", cluster.bootstrap)
    row = next(line for line in described.stdout.splitlines() if line.startswith("spreader"))
    coordinator = int(row.split()[-1])
    cluster.nodes[coordinator].kill()
    again = transactional(cluster.bootstrap, "spreader")
    again.begin_transaction()
    for i in range(30):
        again.produce("spread", b"third-%d" % i, partition=i % 3)
    again.commit_transaction(60)
    # (Raft's own entries take offsets too: read up to each partition's stable end.)
    ends = {p: end_offsets(cluster.bootstrap, "spread", p, "read_committed") for p in range(3)}
    values = read(cluster.bootstrap, "spread", [0, 1, 2], "read_committed", until_offset=ends)
    expected = [b"%s-%d" % (w, i) for w in (b"first", b"second", b"third") for i in range(30)]
    assert sorted(values) == sorted(expected)


def test_consume_transform_produce_commits_offsets_with_the_output(silt):
    """The exactly-once loop: offsets sent to the transaction count only if it commits."""
    create_topic(silt.bootstrap, "in")
    create_topic(silt.bootstrap, "out")
    source = Producer({"bootstrap.servers": silt.bootstrap})
    for i in range(20):
        source.produce("in", b"%d" % i, partition=0)
    source.flush(30)

    def consumer():
        c = Consumer({
            "bootstrap.servers": silt.bootstrap,
            "group.id": "etl",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        })
        c.assign([TopicPartition("in", 0)])
        return c

    def step(c, producer, commit):
        got = []
        while len(got) < 10:
            msg = c.poll(1.0)
            if msg is not None and not msg.error():
                got.append(msg)
        producer.begin_transaction()
        for msg in got:
            producer.produce("out", b"x" + msg.value(), partition=0)
        producer.send_offsets_to_transaction(
            [TopicPartition("in", 0, got[-1].offset() + 1)], c.consumer_group_metadata(), 30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.flush(30)
            producer.abort_transaction(30)
        return [m.value() for m in got]

    c = consumer()
    producer = transactional(silt.bootstrap, "etl-tx")
    assert step(c, producer, commit=True) == [b"%d" % i for i in range(10)]
    assert step(c, producer, commit=False) == [b"%d" % i for i in range(10, 20)]
    c.close()
    # A new member starts where the committed transaction left the group: at 10.
    c = consumer()
    committed = c.committed([TopicPartition("in", 0)], timeout=10)[0]
    assert committed.offset == 10, committed
    assert step(c, producer, commit=True) == [b"%d" % i for i in range(10, 20)]
    c.close()
    out = read(silt.bootstrap, "out", [0], "read_committed", until_offset=end_offsets(silt.bootstrap, "out", 0, "read_committed"))
    assert out == [b"x%d" % i for i in range(20)]


def test_kafka_python_and_kafkajs_transactions_commit_and_abort(silt):
    from kafka import KafkaProducer

    from conftest import run_node

    create_topic(silt.bootstrap, "polyglot")
    producer = KafkaProducer(bootstrap_servers=silt.bootstrap, transactional_id="py-tx")
    producer.init_transactions()
    producer.begin_transaction()
    for i in range(5):
        producer.send("polyglot", b"py-commit-%d" % i, partition=0)
    producer.commit_transaction()
    producer.begin_transaction()
    for i in range(5):
        producer.send("polyglot", b"py-abort-%d" % i, partition=0)
    producer.flush()
    producer.abort_transaction()
    producer.close()
    run_node("transaction.js", {"brokers": [silt.bootstrap], "topic": "polyglot", "transactionalId": "js-tx", "count": 5})
    end = end_offsets(silt.bootstrap, "polyglot", 0, "read_committed")
    assert end == end_offsets(silt.bootstrap, "polyglot", 0, "read_uncommitted")
    values = read(silt.bootstrap, "polyglot", [0], "read_committed", until_offset=end)
    assert values == [b"py-commit-%d" % i for i in range(5)] + [b"js-commit-%d" % i for i in range(5)]
    everything = read(silt.bootstrap, "polyglot", [0], "read_uncommitted", until_offset=end)
    assert len(everything) == 20


def test_an_archived_transactional_topic_replays_exactly_its_committed_records(silt_factory):
    """Aborted transactions spread over many segments, every segment archived and gone from
    the local log: a read_committed replay from offset 0 goes through the archive (the
    aborted ranges come from the sidecars) and returns exactly the committed records."""
    from test_historical import TIERED, only_in_the_archive

    silt = silt_factory(extra_args=TIERED)
    create_topic(silt.bootstrap, "history", config={"segment.bytes": "65536", "retention.local.target.ms": "1"})
    producer = transactional(silt.bootstrap, "historian")
    committed = []
    for t in range(24):
        producer.begin_transaction()
        values = [b"t%d-%d-" % (t, i) + b"v" * 1000 for i in range(20)]
        for value in values:
            producer.produce("history", value, partition=0)
        if t % 3 == 2:
            producer.flush(30)
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)
            committed += values
    deadline = time.monotonic() + 180
    while not only_in_the_archive(silt, "history"):
        assert time.monotonic() < deadline, "never archived whole"
        time.sleep(0.2)
    end = end_offsets(silt.bootstrap, "history", 0, "read_committed")
    assert partition_start(silt, "history") == end, "the local log holds none of it"
    assert read(silt.bootstrap, "history", [0], "read_committed", until_offset=end, timeout=120) == committed
    assert metric(silt, "silt_archive_reads_total") > 0
    everything = read(silt.bootstrap, "history", [0], "read_uncommitted", until_offset=end, timeout=120)
    assert len(everything) == 24 * 20


def test_a_decided_commit_is_finished_by_the_next_coordinator(cluster_factory):
    """Between EndTxn and the markers: one partition's only replica is down when the
    transaction commits (its marker cannot be written), then the coordinator dies too. The
    next coordinator finds the commit decided and writes the missing marker once the
    partition is back: the transaction completes, never half."""
    from test_cluster_ops import replicas_of

    cluster = cluster_factory(3)
    create_topic(cluster.bootstrap, "halves", partitions=3)  # one replica each, spread
    placement = replicas_of(cluster.bootstrap, "halves")
    producer = transactional(cluster.bootstrap, "halver")
    producer.begin_transaction()
    for i in range(30):
        producer.produce("halves", b"whole-%d" % i, partition=i % 3)
    producer.flush(30)
    lone = placement[0][0]
    cluster.nodes[lone].kill()
    producer.commit_transaction(30)  # decided; partition 0's marker waits for its node
    listed = silt_cli("transaction", "describe", "halver", "--brokers", cluster.bootstrap)
    assert "PrepareCommit" in listed.stdout, listed.stdout + listed.stderr
    rows = silt_cli("transaction", "list", "--brokers", cluster.bootstrap).stdout.splitlines()
    coordinator = int(next(r for r in rows if r.startswith("halver")).split()[-1])
    if coordinator != lone:
        cluster.nodes[coordinator].kill()
    cluster.nodes[lone].start()
    if coordinator != lone:
        cluster.nodes[coordinator].start()

    def complete():
        out = silt_cli("transaction", "describe", "halver", "--brokers", cluster.bootstrap)
        return "CompleteCommit" in out.stdout
    deadline = time.monotonic() + 60
    while not complete():
        assert time.monotonic() < deadline, "the decided commit was never finished"
        time.sleep(0.3)
    ends = {p: end_offsets(cluster.bootstrap, "halves", p, "read_committed") for p in range(3)}
    values = read(cluster.bootstrap, "halves", [0, 1, 2], "read_committed", until_offset=ends)
    assert sorted(values) == sorted(b"whole-%d" % i for i in range(30))


def test_an_idle_transactional_id_expires_and_starts_afresh(silt_factory):
    silt = silt_factory(extra_args=["--set", "transactional_id_expiration_ms=3000"])
    create_topic(silt.bootstrap, "brief")
    producer = transactional(silt.bootstrap, "brief-id")
    producer.begin_transaction()
    producer.produce("brief", b"once")
    producer.commit_transaction(30)

    def producer_id():
        out = silt_cli("transaction", "describe", "brief-id", "--brokers", silt.bootstrap)
        line = next((l for l in out.stdout.splitlines() if l.startswith("PRODUCER-ID")), None)
        return int(line.split()[-1]) if line else None
    first = producer_id()
    assert first is not None
    deadline = time.monotonic() + 30
    while producer_id() is not None:
        assert time.monotonic() < deadline, "the idle id never expired"
        time.sleep(0.2)
    # Forgotten: the next producer of that id gets a new producer id at epoch 0.
    again = transactional(silt.bootstrap, "brief-id")
    again.begin_transaction()
    again.produce("brief", b"twice")
    again.commit_transaction(30)
    assert producer_id() not in (None, first)
    assert read(silt.bootstrap, "brief", [0], "read_committed", until_offset=4) == [b"once", b"twice"]
