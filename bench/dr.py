"""Disaster recovery from a replicated bucket: recovery time and recovery point, in one run.

Against moto's S3 server (started here, on 127.0.0.1) and a release silt:
  1. cluster A produces --mib MiB across --partitions partitions (acks=all), a consumer group
     commits an offset on every partition, and A archives everything;
  2. the bucket is replicated into a second bucket with boto3 (server-side copies; this
     stands for S3 cross-region replication and is not part of the RTO);
  3. region A is lost: A stops. Cluster B (empty data directory, archive = the copy) runs
     `silt cluster restore`; the recovery time objective is measured from that command's
     start to the first and to the last partition serving its earliest offset to a
     librdkafka consumer, and to the group's consumers resuming at their committed offsets.
  4. The recovery point objective is what the settings make it: data up to
     archive_upload_interval_ms behind, committed offsets up to archive_metadata_interval_ms,
     plus the bucket replication's own lag.
Beside it, the raw store: the time of one small GET (the restore is a few per partition).

Usage: bench/dr.sh [--mib 1024] [--partitions 12]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from historical import Node, admin_json, start_moto, wait_for  # noqa: E402
from produce_consume import VALUE, producer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "dr"
GROUP = "dr-readers"
UPLOAD_INTERVAL_MS = 1000
METADATA_INTERVAL_MS = 1000


def fill(bootstrap, partitions, total_bytes):
    p = producer(bootstrap)
    payload = os.urandom(VALUE)
    sent = 0
    last_report = time.monotonic()
    while sent * VALUE < total_bytes:
        try:
            p.produce(TOPIC, payload, partition=sent % partitions)
            sent += 1
        except BufferError:
            p.poll(0.01)
        if sent % 1000 == 0:
            p.poll(0)
            if time.monotonic() - last_report > 5:
                print(f"  produced {sent * VALUE / 2**20:.0f} MiB", flush=True)
                last_report = time.monotonic()
    assert p.flush(600) == 0
    del p
    return sent


def archived(node):
    topic = next(t for t in admin_json(node.admin, "/v1/status")["topics"] if t["name"] == TOPIC)
    return all(p["archive"] and p["archive"]["archived_next_offset"] == p["high_watermark"] for p in topic["partitions"])


def replicate(s3, source, target):
    copied = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=source):
        for obj in page.get("Contents", []):
            s3.copy_object(Bucket=target, Key=obj["Key"], CopySource={"Bucket": source, "Key": obj["Key"]})
            copied += obj["Size"]
    return copied


def first_record_times(bootstrap, partitions, started, timeout=300):
    """Seconds from `started` until each partition returned its offset-0 record."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "dr-probe", "enable.auto.commit": False,
                  "topic.metadata.refresh.interval.ms": 100, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(TOPIC, p, 0) for p in range(partitions)])
    seen = {}
    deadline = time.monotonic() + timeout
    while len(seen) < partitions and time.monotonic() < deadline:
        m = c.poll(0.1)
        if m is None or m.error():
            continue
        if m.partition() not in seen:
            seen[m.partition()] = time.monotonic() - started
            c.pause([TopicPartition(TOPIC, m.partition())])
    c.close()
    if len(seen) < partitions:
        raise RuntimeError(f"only {len(seen)} of {partitions} partitions served within {timeout}s")
    return sorted(seen.values())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "silt"))
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--dir", default=str(ROOT / "target" / "bench-tmp"))
    args = parser.parse_args()
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=base))
    moto, env = start_moto(work)
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT"], aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    for bucket in ("region-a", "region-b"):
        s3.create_bucket(Bucket=bucket)
    binary = Path(args.binary)
    settings = ["--set", f"archive_upload_interval_ms={UPLOAD_INTERVAL_MS}", "--set", f"archive_metadata_interval_ms={METADATA_INTERVAL_MS}",
                "--set", "archive_check_interval_ms=200", "--set", "log_segment_bytes=67108864"]
    a = b = None
    try:
        # The raw store: one small GET, as the restore makes a few per partition.
        s3.put_object(Bucket="region-a", Key="probe", Body=b"x" * 1024)
        gets = []
        for _ in range(50):
            t = time.monotonic()
            s3.get_object(Bucket="region-a", Key="probe")["Body"].read()
            gets.append(time.monotonic() - t)
        s3.delete_object(Bucket="region-a", Key="probe")
        gets.sort()
        print(f"raw store: small GET p50 {gets[25] * 1000:.1f} ms, p99 {gets[49] * 1000:.1f} ms (boto3)", flush=True)

        a = Node(binary, work / "a", env, ["--archive", "s3://region-a/silt", *settings]).start()
        admin = AdminClient({"bootstrap.servers": a.bootstrap})
        admin.create_topics([NewTopic(TOPIC, args.partitions, 1, config={"retention.ms": "-1"})])[TOPIC].result(30)
        del admin
        t = time.monotonic()
        count = fill(a.bootstrap, args.partitions, args.mib << 20)
        print(f"A: produced {count} messages of {VALUE} bytes ({args.mib} MiB) across {args.partitions} partitions "
              f"in {time.monotonic() - t:.1f} s", flush=True)
        committer = Consumer({"bootstrap.servers": a.bootstrap, "group.id": GROUP, "enable.auto.commit": False})
        per_partition = count // args.partitions
        committed = {p: per_partition // 2 + p for p in range(args.partitions)}
        committer.commit(offsets=[TopicPartition(TOPIC, p, o) for p, o in committed.items()], asynchronous=False)
        committer.close()
        t = time.monotonic()
        wait_for(lambda: archived(a), 900, "A archived everything")
        print(f"A: everything archived {time.monotonic() - t:.1f} s after the last ack", flush=True)
        time.sleep(METADATA_INTERVAL_MS / 1000 * 2)
        a.stop()
        a = None
        t = time.monotonic()
        copied = replicate(s3, "region-a", "region-b")
        print(f"replication (boto3 copy, not part of the RTO): {copied / 2**20:.0f} MiB in {time.monotonic() - t:.1f} s", flush=True)

        b = Node(binary, work / "b", env, ["--archive", "s3://region-b/silt", *settings]).start()
        started = time.monotonic()
        probe = {}
        prober = threading.Thread(target=lambda: probe.setdefault("times", first_record_times(b.bootstrap, args.partitions, started)))
        prober.start()
        restore = subprocess.run([str(binary), "cluster", "restore", "--from", "s3://region-b/silt", "--brokers", b.bootstrap],
                                 capture_output=True, text=True, env={**os.environ, **env})
        restored_in = time.monotonic() - started
        if restore.returncode != 0:
            raise RuntimeError(restore.stdout + restore.stderr)
        print("restore:", restore.stdout.strip().replace("\n", "\n  "), flush=True)
        prober.join(600)
        times = probe["times"]
        resumer = Consumer({"bootstrap.servers": b.bootstrap, "group.id": GROUP, "enable.auto.commit": False, "auto.offset.reset": "error"})
        positions = resumer.committed([TopicPartition(TOPIC, p) for p in range(args.partitions)], timeout=30)
        resumer.close()
        assert {tp.partition: tp.offset for tp in positions} == committed, positions
        print(f"RTO ({args.mib} MiB, {args.partitions} partitions): `silt cluster restore` done in {restored_in:.2f} s; "
              f"first partition serving offset 0 after {times[0]:.2f} s, last after {times[-1]:.2f} s "
              f"(probe consumer polling every 100 ms); committed offsets of the group restored exactly", flush=True)
        print(f"RPO as configured: data archive_upload_interval_ms={UPLOAD_INTERVAL_MS} (default 3600000) + replication lag; "
              f"committed offsets archive_metadata_interval_ms={METADATA_INTERVAL_MS} (default 60000) + replication lag", flush=True)
    finally:
        for node in (a, b):
            if node is not None and node.process.poll() is None:
                node.stop()
        moto.terminate()
        moto.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
