"""Idempotent producers (no duplicates, no gaps, also across a broker restart), and every
acknowledged message surviving restarts: clean (SIGTERM) and not (SIGKILL)."""

import threading
import time

from confluent_kafka import Producer

from conftest import wait_for
from helpers import confluent_produce, confluent_read, create_topic

COUNT = 50_000


def check_exactly_once(messages, partitions, count):
    """Values are b'<partition>:<sequence>'; each partition must hold 0..n-1 once, in order."""
    seen = {p: [] for p in range(partitions)}
    for m in messages:
        p, i = m.value().split(b":")
        assert int(p) == m.partition()
        seen[m.partition()].append(int(i))
    total = 0
    for p, sequence in seen.items():
        assert sequence == list(range(len(sequence))), f"partition {p}: duplicates or gaps"
        total += len(sequence)
    assert total == count


def test_fifty_thousand_idempotent_messages_exactly_once(silt):
    create_topic(silt.bootstrap, "idem", partitions=3)
    records = [(i % 3, None, b"%d:%d" % (i % 3, i // 3), None, None) for i in range(COUNT)]
    confluent_produce(silt.bootstrap, "idem", records, **{"enable.idempotence": True, "linger.ms": 2})
    got = confluent_read(silt.bootstrap, "idem", [0, 1, 2], COUNT, timeout=120)
    check_exactly_once(got, 3, COUNT)


def test_idempotent_producer_across_a_broker_restart(silt):
    """The broker is killed (SIGKILL) and restarted while an idempotent producer keeps sending:
    it retries what was in flight, and the restarted broker, with its producer state rebuilt
    from the log, answers retries of appended batches as duplicates."""
    create_topic(silt.bootstrap, "idem-restart", partitions=2)
    delivered = []
    errors = []
    producer = Producer({
        "bootstrap.servers": silt.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 120_000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
    })

    def on_delivery(err, msg):
        (errors if err else delivered).append(err or msg.value())

    def produce_all():
        for i in range(COUNT):
            p = i % 2
            while True:
                try:
                    producer.produce("idem-restart", value=b"%d:%d" % (p, i // 2), partition=p, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        producer.flush(180)

    sender = threading.Thread(target=produce_all)
    sender.start()
    wait_for(lambda: len(delivered) >= COUNT // 3, timeout=120, what="a third delivered")
    silt.restart(hard=True)
    sender.join(240)
    assert not sender.is_alive()
    assert not errors, errors[:5]
    assert len(delivered) == COUNT
    got = confluent_read(silt.bootstrap, "idem-restart", [0, 1], COUNT, timeout=120)
    check_exactly_once(got, 2, COUNT)
    assert "producer" not in silt.log_text().lower() or "panicked" not in silt.log_text()


def test_acknowledged_messages_survive_sigterm_and_sigkill(silt):
    create_topic(silt.bootstrap, "durable", partitions=2, config={"segment.bytes": "65536"})
    first = [(i % 2, b"k%d" % i, b"first-%d" % i, None, None) for i in range(5000)]
    confluent_produce(silt.bootstrap, "durable", first)
    silt.restart(hard=False)
    assert "truncating" not in silt.log_text(), "a clean restart needs no recovery"
    second = [(i % 2, b"k%d" % i, b"second-%d" % i, None, None) for i in range(5000)]
    confluent_produce(silt.bootstrap, "durable", second)
    silt.restart(hard=True)
    got = confluent_read(silt.bootstrap, "durable", [0, 1], 10_000, timeout=120)
    values = sorted(m.value() for m in got)
    assert values == sorted([v for (_, _, v, _, _) in first + second])
    # And it keeps going after the crash.
    confluent_produce(silt.bootstrap, "durable", [(0, None, b"after", None, None)])
    assert confluent_read(silt.bootstrap, "durable", [0], 5001)[-1].value() == b"after"
