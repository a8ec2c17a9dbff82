"""A consumer-group member, run as its own process by the group tests (so it can be killed).

It subscribes with librdkafka (or kafka-python with --client kafka-python), and for each
message: writes it to its output (one JSON line, flushed), then commits its offset
synchronously. So a message is written before it is committed: a member killed between the two
leaves that one message to be consumed again by the next owner, and nothing can be lost.

Events, one JSON object per line on stdout, each with "t" (the machine's monotonic clock, the
same in every process):
  {"event": "assigned", "partitions": [..], "topics": ["topic:p", ..]}   after each (incremental) assignment
  {"event": "revoked", "partitions": [..], "topics": [..]}    before partitions are taken away
  {"event": "message", "topic": t, "partition": p, "offset": o, "value": "..."}
It stops cleanly (close, which leaves the group) on SIGTERM. `--protocol consumer` runs the
KIP-848 protocol (the broker assigns; rebalances are incremental).
"""

import argparse
import json
import signal
import sys
import time

stop = False


def on_term(*_):
    global stop
    stop = True


def emit(**event):
    event["t"] = time.monotonic()
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def run_librdkafka(args):
    from confluent_kafka import Consumer

    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "client.id": args.name,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
    }
    incremental = args.strategy == "cooperative-sticky" or args.protocol == "consumer"
    if args.protocol == "consumer":
        # The broker sets the session and heartbeat timing and assigns.
        conf["group.protocol"] = "consumer"
        if args.assignor:
            conf["group.remote.assignor"] = args.assignor
    else:
        conf.update({
            "session.timeout.ms": args.session_timeout_ms,
            "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": args.strategy,
        })
    if args.instance:
        conf["group.instance.id"] = args.instance
    consumer = Consumer(conf)

    def named(partitions):
        return sorted(f"{p.topic}:{p.partition}" for p in partitions)

    def on_assign(c, partitions):
        emit(event="assigned", partitions=sorted(p.partition for p in partitions), topics=named(partitions))
        if incremental:
            c.incremental_assign(partitions)
        else:
            c.assign(partitions)

    def on_revoke(c, partitions):
        emit(event="revoked", partitions=sorted(p.partition for p in partitions), topics=named(partitions))
        if incremental:
            c.incremental_unassign(partitions)
        else:
            c.unassign()

    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
    # Messages a poll made while a commit was retried: handled next, never dropped.
    waiting = []
    while not stop:
        msg = waiting.pop(0) if waiting else consumer.poll(0.2)
        if msg is None or msg.error():
            continue
        emit(event="message", topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
             value=msg.value().decode())
        while not stop:
            try:
                consumer.commit(message=msg, asynchronous=False)
                break
            except Exception as e:  # a rebalance or a broker restart: retry until it takes or is moot
                code = e.args[0].code() if e.args and hasattr(e.args[0], "code") else None
                emit(event="commit-error", error=str(e))
                from confluent_kafka import KafkaError
                if code in (KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS,
                            KafkaError._NO_OFFSET, KafkaError.STALE_MEMBER_EPOCH, KafkaError.FENCED_MEMBER_EPOCH):
                    break
                polled = consumer.poll(0.1)
                if polled is not None and not polled.error():
                    waiting.append(polled)
    consumer.close()


def run_kafka_python(args):
    from kafka import KafkaConsumer, ConsumerRebalanceListener, TopicPartition, OffsetAndMetadata

    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=500,
        client_id=args.name,
    )

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit(event="revoked", partitions=sorted(p.partition for p in revoked))

        def on_partitions_assigned(self, assigned):
            emit(event="assigned", partitions=sorted(p.partition for p in assigned))

    consumer.subscribe([args.topic], listener=Listener())
    while not stop:
        for tp, records in consumer.poll(timeout_ms=200).items():
            for record in records:
                emit(event="message", partition=record.partition, offset=record.offset, value=record.value.decode())
                try:
                    consumer.commit({TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(record.offset + 1, "", -1)})
                except Exception as e:
                    emit(event="commit-error", error=str(e))
    consumer.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--name", default="member")
    parser.add_argument("--client", default="librdkafka", choices=["librdkafka", "kafka-python"])
    parser.add_argument("--strategy", default="range")
    parser.add_argument("--instance")
    parser.add_argument("--protocol", default="classic", choices=["classic", "consumer"])
    parser.add_argument("--assignor", help="the broker's assignor (consumer protocol): uniform or range")
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    if args.client == "librdkafka":
        run_librdkafka(args)
    else:
        run_kafka_python(args)


if __name__ == "__main__":
    main()
