"""What security costs: produce and consume over SASL_SSL (SCRAM-SHA-512, TLS, ACLs checked)
against PLAINTEXT on the same broker in the same run, and produce latency with 10,000 ACLs
loaded against one.

One release broker with two listeners: PLAINTEXT on loopback (its ANONYMOUS principal is a
super user, so nothing is checked: the floor) and SASL_SSL (user `bench`, allowed by ACLs).
Runs alternate plaintext / SASL_SSL so a noisy neighbour hurts both alike; the best of each
is reported. Then, over SASL_PLAINTEXT (no TLS, so only the authorization differs), produce at
a fixed rate with 1 ACL for the user, then with 10,000 more bindings (literal and prefixed,
for other principals and topics, and some for this user on other topics), p50/p99/p99.9.

Usage: bench/security.sh [--seconds 8] (builds a release silt, runs this with the venv's
Python).
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trustme
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding, AclOperation, AclPermissionType, AdminClient, NewTopic, ResourcePatternType,
    ResourceType, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion,
)

ROOT = Path(__file__).resolve().parents[1]
VALUE = 1024
ADMIN = ("admin", "bench-admin-pw")


def start(binary, work, certs):
    args = [
        str(binary), "serve", "--data-dir", str(work / "data"), "--kafka-addr", "127.0.0.1:0",
        "--admin-addr", "127.0.0.1:0", "--rpc-addr", "127.0.0.1:0",
        "--set", "listeners=PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        "--set", f"tls_cert_file={certs / 'server.pem'}", "--set", f"tls_key_file={certs / 'server.key'}",
        "--set", "super_users=User:ANONYMOUS",
    ]
    env = {**os.environ, "RUST_LOG": "warn,silt=info", "SILT_BOOTSTRAP_USER": f"{ADMIN[0]}:{ADMIN[1]}"}
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    for line in process.stderr:
        if "silt is serving" in line:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, {n: f"127.0.0.1:{p}" for n, p in re.findall(r"(\w+)://127\.0\.0\.1:(\d+)", line)}
    raise RuntimeError("silt did not start")


def conf(listeners, kind, ca):
    if kind == "PLAINTEXT":
        return {"bootstrap.servers": listeners["PLAINTEXT"]}
    c = {"bootstrap.servers": listeners[kind], "security.protocol": kind, "sasl.mechanisms": "SCRAM-SHA-512",
         "sasl.username": "bench", "sasl.password": "bench-pw"}
    if kind == "SASL_SSL":
        c["ssl.ca.location"] = str(ca)
    return c


def produce_max(c, topic, seconds):
    p = Producer({**c, "acks": "all", "linger.ms": 5, "batch.size": 1 << 20,
                  "queue.buffering.max.kbytes": 256 * 1024, "queue.buffering.max.messages": 1_000_000})
    payload = os.urandom(VALUE)
    sent = 0
    start_at = time.monotonic()
    while time.monotonic() - start_at < seconds:
        for _ in range(1000):
            try:
                p.produce(topic, payload)
                sent += 1
            except BufferError:
                p.poll(0.001)
        p.poll(0)
    assert p.flush(120) == 0
    return sent * VALUE / (time.monotonic() - start_at), sent


def consume_all(c, topic, expected):
    consumer = Consumer({**c, "group.id": "bench-unused", "enable.auto.commit": False,
                         "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 8 << 20,
                         "queued.max.messages.kbytes": 512 * 1024})
    consumer.assign([TopicPartition(topic, 0, 0)])
    count = size = 0
    start_at = time.monotonic()
    while count < expected:
        for m in consumer.consume(10_000, 1.0):
            if m.error():
                raise RuntimeError(m.error())
            size += len(m.value())
            count += 1
    elapsed = time.monotonic() - start_at
    consumer.close()
    return size / elapsed


def produce_at_rate(c, topic, rate, seconds):
    p = Producer({**c, "acks": "all", "linger.ms": 0})
    payload = os.urandom(VALUE)
    latencies = []
    start_at = time.monotonic()
    sent = 0
    while time.monotonic() - start_at < seconds:
        due = int((time.monotonic() - start_at) * rate)
        while sent < due:
            t = time.monotonic()
            p.produce(topic, payload, on_delivery=lambda e, m, t=t: latencies.append(time.monotonic() - t))
            sent += 1
        p.poll(0)
        time.sleep(0.001)
    p.flush(60)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    return pick(0.5), pick(0.99), pick(0.999), len(latencies)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "silt"))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--dir", default=str(ROOT / "target" / "bench-tmp"))
    args = parser.parse_args()
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=base))
    certs = work / "certs"
    certs.mkdir()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(certs / "ca.pem"))
    server = ca.issue_cert("127.0.0.1")
    server.private_key_pem.write_to_path(str(certs / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(certs / "server.pem"))
    process, listeners = start(Path(args.binary), work, certs)
    try:
        admin = AdminClient({"bootstrap.servers": listeners["PLAINTEXT"]})
        for f in admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
                "bench", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"bench-pw")]).values():
            f.result(30)
        topics = ["plain", "secure", "latency"]
        for f in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
            f.result(30)
        mine = [AclBinding(ResourceType.TOPIC, t, ResourcePatternType.LITERAL, "User:bench", "*", op, AclPermissionType.ALLOW)
                for t in ("secure", "latency") for op in (AclOperation.WRITE, AclOperation.READ)]
        mine.append(AclBinding(ResourceType.GROUP, "bench-unused", ResourcePatternType.LITERAL, "User:bench", "*",
                               AclOperation.READ, AclPermissionType.ALLOW))
        for f in admin.create_acls(mine).values():
            f.result(30)
        print(f"bench: 1 partition, {VALUE}-byte values, acks=-1, {args.seconds:.0f} s per run, in {work}", flush=True)
        best = {"PLAINTEXT": [0, 0], "SASL_SSL": [0, 0]}
        for round_ in range(args.rounds):
            for kind, topic in (("PLAINTEXT", "plain"), ("SASL_SSL", "secure")):
                c = conf(listeners, kind, certs / "ca.pem")
                produced, count = produce_max(c, topic, args.seconds)
                consumed = consume_all(c, topic, count)
                # A fresh topic per round keeps consume reading what this round wrote.
                print(f"  round {round_ + 1} {kind:<10} produce {produced / 1e6:7.1f} MB/s   consume {consumed / 1e6:7.1f} MB/s", flush=True)
                best[kind] = [max(best[kind][0], produced), max(best[kind][1], consumed)]
                for f in admin.delete_topics([topic]).values():
                    f.result(30)
                for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
                    f.result(30)
        plain, secure = best["PLAINTEXT"], best["SASL_SSL"]
        print(f"produce  plaintext {plain[0] / 1e6:7.1f} MB/s   SASL_SSL {secure[0] / 1e6:7.1f} MB/s   = {100 * secure[0] / plain[0]:.0f}% (bar 70%)")
        print(f"consume  plaintext {plain[1] / 1e6:7.1f} MB/s   SASL_SSL {secure[1] / 1e6:7.1f} MB/s   = {100 * secure[1] / plain[1]:.0f}% (bar 70%)")

        c = conf(listeners, "SASL_PLAINTEXT", None)
        produce_at_rate(c, "latency", args.rate, 2)  # warm-up: connections, SCRAM, metadata
        few = produce_at_rate(c, "latency", args.rate, args.seconds)
        print(f"produce at {args.rate}/s, SASL_PLAINTEXT,      {len(mine):>5} ACLs: p50 {few[0]:6.2f} ms  p99 {few[1]:6.2f} ms  p99.9 {few[2]:6.2f} ms ({few[3]} msgs)", flush=True)
        many = []
        for i in range(10_000):
            principal = f"User:u{i % 500}" if i % 10 else "User:bench"
            name = f"team-{i}" if i % 3 else f"team-{i}-"
            pattern = ResourcePatternType.LITERAL if i % 3 else ResourcePatternType.PREFIXED
            many.append(AclBinding(ResourceType.TOPIC, name, pattern, principal, "*", AclOperation.WRITE, AclPermissionType.ALLOW))
        for chunk in range(0, len(many), 1000):
            for f in admin.create_acls(many[chunk:chunk + 1000]).values():
                f.result(60)
        loaded = produce_at_rate(c, "latency", args.rate, args.seconds)
        again = produce_at_rate(c, "latency", args.rate, args.seconds)
        total = len(mine) + len(many)
        for label, r in (("", loaded), (" (again)", again)):
            print(f"produce at {args.rate}/s, SASL_PLAINTEXT, {total:>5} ACLs{label}: p50 {r[0]:6.2f} ms  p99 {r[1]:6.2f} ms  p99.9 {r[2]:6.2f} ms ({r[3]} msgs)", flush=True)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
