"""Key lookups in the archive (#18) beside the alternative, in one run.

moto's S3 server behind tests/clients/store_proxy.py (30 ms to first byte, 50 MB/s per
connection; both niced, standing for other machines), and a release silt archiving a keyed
topic with `archive.key.index=true` in small segments (so each partition has key filters).
Then, with the broker's local log gone (the archive holds everything):
  1. index and filter bytes in the bucket against segment bytes;
  2. `silt archive find --key K` for keys present (time, GETs, records) and one absent,
     straight from the bucket;
  3. the alternative: a librdkafka consumer replaying the key's partition from offset 0
     through the broker, cache empty, picking out the key;
  4. `silt archive export --format parquet` of the whole topic to another prefix of the
     bucket: segment MB/s against the store's raw GET bandwidth, Parquet bytes against
     segment bytes;
  5. the store's raw GET bandwidth in the same run.

Values are random bytes by default (nothing for Parquet's Snappy to gain); `--values json`
makes them JSON events of the same size.

Usage: bench/archive-find.sh [--mib 512] [--partitions 4] [--keys 10000] [--values json]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from historical import (  # noqa: E402
    Node,
    admin_json,
    archive_everything,
    cold_start,
    raw_capacity,
    settle,
    start_moto,
    start_proxy,
)

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "customers"


def json_event(i, size, rng):
    """A JSON order event of about `size` bytes."""
    import json

    event = {"order_id": i, "customer": rng.randrange(10**6), "amount": round(rng.random() * 1000, 2),
             "currency": rng.choice(["EUR", "USD", "GBP", "JPY"]), "ts": 1_700_000_000_000 + i * 7,
             "items": [{"sku": "SKU-%05d" % rng.randrange(10**5), "qty": rng.randrange(1, 9)}
                       for _ in range(max(1, (size - 120) // 30))]}
    return json.dumps(event, separators=(",", ":")).encode()[:size]


def produce_keyed(bootstrap, total_bytes, value_bytes, keys, values="random"):
    import random

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 1 << 20,
                  "queue.buffering.max.kbytes": 256 * 1024, "compression.type": "none"})
    rng = random.Random(42)
    payload = os.urandom(value_bytes)
    sent = 0
    while sent * value_bytes < total_bytes:
        if values == "json":
            payload = json_event(sent, value_bytes, rng)
        try:
            p.produce(TOPIC, payload, key=b"customer-%06d" % (sent % keys))
            sent += 1
        except BufferError:
            p.poll(0.01)
        if sent % 1000 == 0:
            p.poll(0)
    assert p.flush(300) == 0
    return sent


def bucket_bytes(env):
    """Bytes of segments, key indexes and key filters in the bench bucket."""
    import boto3

    c = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT"], aws_access_key_id="test", aws_secret_access_key="test",
                     region_name="us-east-1")
    sizes = {".log": 0, ".keys": 0, ".kf": 0, ".sidecar": 0, ".parquet": 0}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket="bench"):
        for o in page.get("Contents", []):
            for suffix in sizes:
                if o["Key"].endswith(suffix):
                    sizes[suffix] += o["Size"]
    return sizes


def find(binary, env, key):
    start = time.monotonic()
    done = subprocess.run([str(binary), "archive", "--archive", "s3://bench/find", "find", TOPIC, "--key", key,
                           "--format", "json"], capture_output=True, text=True, env={**os.environ, **env})
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    found = sum(1 for line in done.stdout.splitlines() if line.strip())
    gets = int(re.search(r"(\d+) GETs", done.stderr).group(1))
    # The partition that held the key (the partitioners may name two when they disagree).
    partition = next((int(p) for p, n in re.findall(r"/(\d+): (\d+) found", done.stderr) if int(n) > 0), None)
    return elapsed, gets, found, partition, done.stderr


def raw_parallel(binary, env, object_mib, parallel):
    """The store's GET rate for whole segment-sized objects, `parallel` at once: what an
    export reading that many segments side by side could get at most."""
    import json

    raw = json.loads(subprocess.run(
        [str(binary), "archive", "bench", "--archive", "s3://bench/raw-parallel", "--json", "--objects", str(4 * parallel),
         "--object-mib", str(object_mib), "--chunk-mib", str(object_mib), "--concurrency", str(parallel)],
        capture_output=True, text=True, check=True, env={**os.environ, **env}).stdout)
    return raw["ranged_get_mb_s"] * 1e6


def export(binary, env):
    """`silt archive export` of the topic to s3://bench/lake; (seconds, its summary line)."""
    start = time.monotonic()
    done = subprocess.run([str(binary), "archive", "--archive", "s3://bench/find", "export", TOPIC, "--format", "parquet",
                           "--to", "s3://bench/lake"], capture_output=True, text=True, env={**os.environ, **env})
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return elapsed, done.stdout.strip()


def replay_for_key(bootstrap, partition, end, key):
    """Reads `partition` from offset 0 to `end`, keeping the records of `key`; (seconds, found)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-unused", "enable.auto.commit": False,
                  "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 8 << 20})
    c.assign([TopicPartition(TOPIC, partition, 0)])
    found, last = 0, -1
    start = time.monotonic()
    while last < end - 1:
        for m in c.consume(10_000, 1.0):
            if m.error():
                raise RuntimeError(m.error())
            last = m.offset()
            found += m.key() == key
    elapsed = time.monotonic() - start
    c.close()
    return elapsed, found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "silt"))
    parser.add_argument("--mib", type=int, default=512, help="MiB produced, keyed, over all partitions")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--keys", type=int, default=10_000, help="distinct keys, round robin")
    parser.add_argument("--value-bytes", type=int, default=1024)
    parser.add_argument("--values", choices=["random", "json"], default="random")
    parser.add_argument("--segment-mib", type=int, default=4, help="segment.bytes of the topic, MiB")
    parser.add_argument("--lookups", type=int, default=5)
    parser.add_argument("--first-byte-ms", type=float, default=30.0)
    parser.add_argument("--conn-mb-s", type=float, default=50.0)
    parser.add_argument("--dir", default=str(ROOT / "target" / "bench-tmp"))
    args = parser.parse_args()
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=base))
    moto, moto_env = start_moto(work)
    proxy, env = start_proxy(work, moto_env, args.first_byte_ms, args.conn_mb_s)
    binary = Path(args.binary)
    node = None
    try:
        print(f"store: moto behind a proxy with {args.first_byte_ms:.0f} ms to first byte and {args.conn_mb_s:.0f} MB/s "
              "per connection", flush=True)
        settings = ["--archive", "s3://bench/find", "--set", "archive_check_interval_ms=200", "--set",
                    "retention_check_interval_ms=200", "--set", "archive_upload_interval_ms=1000"]
        node = Node(binary, work / "data", env, settings).start()
        admin = AdminClient({"bootstrap.servers": node.bootstrap})
        config = {"segment.bytes": str(args.segment_mib << 20), "archive.key.index": "true"}
        admin.create_topics([NewTopic(TOPIC, args.partitions, 1, config=config)])[TOPIC].result(30)
        count = produce_keyed(node.bootstrap, args.mib << 20, args.value_bytes, args.keys, args.values)
        print(f"produced {count} records of {args.value_bytes} bytes of {args.values} values ({args.mib} MiB), {args.keys} keys, "
              f"{args.partitions} partitions, {args.segment_mib} MiB segments", flush=True)
        archive_everything(node, admin, TOPIC)
        sizes = bucket_bytes(moto_env)
        print(f"bucket: segments {sizes['.log'] / 1e6:.1f} MB; key indexes {sizes['.keys'] / 1e6:.2f} MB "
              f"({100 * sizes['.keys'] / sizes['.log']:.2f}% of segment bytes); key filters {sizes['.kf'] / 1e3:.1f} kB "
              f"({100 * sizes['.kf'] / sizes['.log']:.3f}%); sidecars {sizes['.sidecar'] / 1e3:.1f} kB", flush=True)

        raw = raw_capacity(binary, env, args.segment_mib)
        times, gets, founds = [], [], []
        partition = None
        for i in range(args.lookups):
            key = b"customer-%06d" % (i * 7919 % args.keys)
            elapsed, g, found, partition, stderr = find(binary, env, key.decode())
            times.append(elapsed)
            gets.append(g)
            founds.append(found)
        print(f"find, key present ({args.lookups} keys, ~{statistics.mean(founds):.0f} records each): "
              f"median {statistics.median(times) * 1000:.0f} ms, {statistics.median(gets):.0f} GETs "
              f"(a new process each: topic catalog, manifest, filters, indexes, record batches)", flush=True)
        elapsed, g, found, _, stderr = find(binary, env, "nobody")
        print(f"find, key absent: {elapsed * 1000:.0f} ms, {g} GETs, {found} records", flush=True)

        export_s, summary = export(binary, env)
        parquet = bucket_bytes(moto_env)[".parquet"]
        raw4 = raw_parallel(binary, env, args.segment_mib, 4)
        print(f"export to Parquet (4 segments at a time): {export_s:.1f} s for {sizes['.log'] / 1e6:.1f} MB of segments = "
              f"{sizes['.log'] / 1e6 / export_s:.1f} MB/s, {100 * sizes['.log'] / export_s / raw4:.0f}% of the store's raw GET "
              f"rate for {args.segment_mib} MiB objects 4 at a time ({raw4 / 1e6:.1f} MB/s); Parquet {parquet / 1e6:.1f} MB = "
              f"{100 * parquet / sizes['.log']:.0f}% of segment bytes [{summary}]", flush=True)

        # The alternative: replay the last key's partition through the broker, cache empty.
        key = b"customer-%06d" % ((args.lookups - 1) * 7919 % args.keys)
        cold_start(node, work)
        settle(node)
        status = admin_json(node.admin, "/v1/status")
        end = next(p["high_watermark"] for t in status["topics"] if t["name"] == TOPIC for p in t["partitions"]
                   if p["partition"] == partition)
        replay_s, replay_found = replay_for_key(node.bootstrap, partition, end, key)
        partition_mb = end * (args.value_bytes + 30) / 1e6
        print(f"replay of partition {partition} ({end} records, ~{partition_mb:.0f} MB) from the archive by a consumer: "
              f"{replay_s:.1f} s ({partition_mb / replay_s:.1f} MB/s; the store's raw GET capacity {raw / 1e6:.1f} MB/s), "
              f"{replay_found} records of the key (find: {founds[-1]}); find took {times[-1] * 1000:.0f} ms = "
              f"{100 * times[-1] / replay_s:.1f}% of the replay", flush=True)
    finally:
        if node is not None and node.process.poll() is None:
            node.stop()
        for process in (proxy, moto):
            process.terminate()
            process.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
