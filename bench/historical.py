"""Historical reads through the archive at real object-store latency, beside the store's own
capacity, in one run.

moto's S3 server (started here, on 127.0.0.1) sits behind tests/clients/store_proxy.py, which
gives every GET what S3 gives: a first-byte delay (30 ms by default) and a bandwidth cap per
connection (50 MB/s). Store and proxy run niced: they stand for other machines. Then, with a
release silt at default segment and upload settings:
  1. economy: PUTs per GiB archived, a full default (1 GiB) segment (multipart parts,
     sidecar, manifest counted);
  2. cold replays (archive, empty cache) by one librdkafka consumer beside its hot read of the
     same topic (local log), and beside the store's capacity for silt's read pattern (16 MiB
     ranged GETs, 8 at once, through the proxy) on objects of the segment's size: the default
     topic (GETs per GiB at default settings), one partition of 64 MiB segments, and 32
     partitions in one consumer;
  3. time to first byte for random historical offsets (empty cache): p50 / p99, GETs per lookup;
  4. produce latency (acks=-1, fixed moderate rate) idle; while a consumer replays the
     archive as fast as it can (cache kept small so the replay keeps hitting the store); then
     while the store serves the same bytes a second as ranged GETs through the same proxy to
     a client that is not silt (the machine's own floor): p50 / p99, `--rounds` times.

Usage: bench/historical.sh [--mib 1100] [--first-byte-ms 30] [--conn-mb-s 50]
       bench/historical.sh --latency-only --rounds 5   (just phase 4, on a 512 MiB replay topic)
"""

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from produce_consume import producer, produce_at_rate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "history"


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(work):
    import boto3

    port = free_port()
    log = open(work / "moto.log", "w")
    # Niced: the store stands for a service on other machines; on this one it must not take the
    # broker's cores (it spends a whole core per stream of ranged GETs).
    process = subprocess.Popen(["nice", "-n", "10", str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=log)
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket="bench")
            break
        except Exception:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("moto_server did not start")
            time.sleep(0.1)
    env = {"AWS_ENDPOINT": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}
    return process, env


def admin_json(admin_addr, path):
    with urllib.request.urlopen(f"http://{admin_addr}{path}", timeout=10) as r:
        return json.loads(r.read())


def metric(admin_addr, name):
    with urllib.request.urlopen(f"http://{admin_addr}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Node:
    """A release silt with its archive in the bench bucket."""

    def __init__(self, binary, data, env, extra=()):
        self.binary, self.data, self.env, self.extra = binary, data, env, list(extra)
        self.process = None

    def start(self, *more):
        os.environ.update(self.env)
        self.process, self.bootstrap, self.admin = start_silt_with_admin(self.binary, self.data, [*self.extra, *more])
        return self

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)


def start_silt_with_admin(binary, data, extra):
    import re
    import threading

    process = subprocess.Popen(
        [str(binary), "serve", "--data-dir", str(data), "--kafka-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--rpc-addr", "127.0.0.1:0", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "warn,silt=info"},
    )
    log = open(Path(data).parent / "silt.log", "a")

    def drain():
        for rest in process.stderr:
            log.write(rest)
            log.flush()

    for line in process.stderr:
        log.write(line)
        match = re.search(r"kafka=(\S+) admin=(\S+)", line)
        if match:
            threading.Thread(target=drain, daemon=True).start()
            return process, match.group(1), match.group(2)
    raise RuntimeError("silt did not start")


def replay(bootstrap, expected, stop_at=None, topic=TOPIC, partitions=1):
    """Reads `partitions` partitions from offset 0 to `expected` messages in all; returns
    (bytes/s, seconds)."""
    c = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "bench-unused", "enable.auto.commit": False,
        "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 8 << 20, "queued.max.messages.kbytes": 256 * 1024,
    })
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    count = size = 0
    start = time.monotonic()
    while count < expected:
        if stop_at is not None and stop_at.is_set():
            break
        for m in c.consume(10_000, 1.0):
            if m.error():
                raise RuntimeError(m.error())
            size += len(m.value())
            count += 1
    elapsed = time.monotonic() - start
    c.close()
    return size / elapsed, elapsed


def store_load(endpoint, stop, result, rate_bytes, connections=4, piece=16 << 20):
    """The store's own work during a replay, with silt taking no part: ranged GETs of the
    size silt's read-ahead asks for, `connections` side by side through the same proxy, paced
    to `rate_bytes` a second (the bytes the replay fetched); niced like the replaying consumer."""
    import boto3

    os.nice(10)

    def client():
        return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")

    size = 64 << 20
    client().put_object(Bucket="bench", Key="store-load", Body=os.urandom(size))
    got, lock, start = [0], threading.Lock(), time.monotonic()

    def run(i):
        c, offset = client(), (i * piece) % size
        while not stop.is_set():
            with lock:
                ahead = got[0] / rate_bytes - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(min(ahead, 0.05))
                continue
            body = c.get_object(Bucket="bench", Key="store-load", Range=f"bytes={offset}-{offset + piece - 1}")["Body"].read()
            with lock:
                got[0] += len(body)
            offset = (offset + connections * piece) % size

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.value = got[0] / (time.monotonic() - start)


def replay_forever(bootstrap, expected, stop, topic):
    # The replaying consumer stands for a client on another machine: niced like the store.
    os.nice(10)
    while not stop.is_set():
        replay(bootstrap, expected, stop, topic=topic)


def first_byte_times(bootstrap, topic, end, samples, chunk_messages):
    """Time from assign() at a random offset to its first message, with one warm consumer;
    each offset in a different chunk of the archive, so none is a cache hit. Also the offsets'
    count, for GETs per lookup."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-unused", "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, 0, end - 1)])
    while c.poll(1.0) is None:  # connected, metadata known
        pass
    times = []
    rng = random.Random(7)
    chunks = rng.sample(range(end // chunk_messages), min(samples, end // chunk_messages))
    for chunk in chunks:
        offset = chunk * chunk_messages + rng.randrange(0, chunk_messages)
        start = time.monotonic()
        c.assign([TopicPartition(topic, 0, offset)])
        while True:
            m = c.poll(5.0)
            if m is not None and not m.error() and m.offset() >= offset:
                break
        times.append(time.monotonic() - start)
        c.unassign()
    c.close()
    times.sort()
    return [times[min(len(times) - 1, int(q * len(times)))] * 1000 for q in (0.5, 0.99)] + [len(times)]


def produce_fill(bootstrap, total_bytes, value_bytes, topic=TOPIC, partitions=1):
    p = producer(bootstrap)
    payload = os.urandom(value_bytes)
    sent = 0
    while sent * value_bytes < total_bytes:
        try:
            p.produce(topic, payload, partition=sent % partitions)
            sent += 1
        except BufferError:
            p.poll(0.01)
        if sent % 1000 == 0:
            p.poll(0)
    assert p.flush(300) == 0
    return sent


def start_proxy(work, moto_env, first_byte_ms, conn_mb_s):
    """The latency proxy in front of moto, niced like the store; silt's env points at it."""
    port = free_port()
    target = int(moto_env["AWS_ENDPOINT"].rsplit(":", 1)[1])
    log = open(work / "proxy.log", "w")
    process = subprocess.Popen(
        ["nice", "-n", "10", sys.executable, str(ROOT / "tests" / "clients" / "store_proxy.py"), "--target-port", str(target),
         "--port", str(port), "--first-byte-ms", str(first_byte_ms), "--bytes-per-sec", str(conn_mb_s * 1e6)],
        stdout=log, stderr=log)
    import socket

    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the store proxy did not start")
            time.sleep(0.05)
    return process, {**moto_env, "AWS_ENDPOINT": f"http://127.0.0.1:{port}"}


def raw_capacity(binary, env, object_mib):
    """The pattern silt's reads use (16 MiB ranged GETs, 8 at once) on an object of a
    segment's size, through the proxy: moto reads a whole object for every ranged GET, so
    object size sets its capacity as much as the proxy does. Returns the best GET rate."""
    raw = json.loads(subprocess.run(
        [str(binary), "archive", "bench", "--archive", "s3://bench/raw", "--json", "--objects", "1",
         "--object-mib", str(object_mib), "--chunk-mib", "16", "--concurrency", "8"],
        capture_output=True, text=True, check=True, env={**os.environ, **env}).stdout)
    print(f"raw store through the proxy, a {object_mib} MiB object: PUT {raw['put_mb_s']:.1f} MB/s, "
          f"GET whole {raw['get_mb_s']:.1f} MB/s, GET 16 MiB x8 {raw['ranged_get_mb_s']:.1f} MB/s", flush=True)
    return max(raw["get_mb_s"], raw["ranged_get_mb_s"]) * 1e6


def settle(node):
    """Waits until the node's own GETs after a start (manifest roots of every partition it
    archives) are done, so GETs counted next are the replay's."""
    last, still = -1.0, 0
    while still < 5:
        time.sleep(0.2)
        now = metric(node.admin, "silt_object_store_gets_total")
        still = still + 1 if now == last else 0
        last = now


def cold_replay(node, work, label, topic, count, partitions, value_bytes, hot, raw):
    """Replays `topic` from the archive after a restart with an empty cache; prints the rate
    beside the hot rate and the store's capacity, and GETs per GiB."""
    cold_start(node, work)
    settle(node)
    gets_before = metric(node.admin, "silt_object_store_gets_total")
    cold, _ = replay(node.bootstrap, count, topic=topic, partitions=partitions)
    gets = metric(node.admin, "silt_object_store_gets_total") - gets_before
    print(f"{label}, cold read (archive): {cold / 1e6:8.1f} MB/s   {100 * cold / hot:.0f}% of hot (bar 70), "
          f"{100 * cold / raw:.0f}% of the store's capacity ({raw / 1e6:.1f} MB/s); "
          f"{gets / (count * value_bytes / float(1 << 30)):.0f} GETs per GiB; widest read-ahead "
          f"{metric(node.admin, 'silt_archive_prefetch_window_bytes') / (1 << 20):.0f} MiB", flush=True)
    if raw < hot:
        print("  (inconclusive against the 70% bar: the store's own capacity is below the hot read rate)", flush=True)


def archive_everything(node, admin, topic):
    """Rolls and uploads everything, then local retention of 1 ms: only the archive holds it."""
    resource = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.local.target.ms", "1", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(30)

    def only_archived():
        t = next(t for t in admin_json(node.admin, "/v1/status")["topics"] if t["name"] == topic)
        return all(p["archive"] and p["archive"]["archived_next_offset"] == p["high_watermark"] == p["local_start_offset"]
                   for p in t["partitions"])

    wait_for(only_archived, 900, f"the archive to take everything of {topic}")


def cold_start(node, work, *more):
    node.stop()
    shutil.rmtree(work / "data" / "cache", ignore_errors=True)
    node.start(*more)


def latency_rounds(node, work, store_env, replay_count, args):
    """Produce latency, idle and during a replay that keeps hitting the store, beside the
    floor the machine sets (the store serving the replay's bytes with silt idle); `--rounds` times, so
    the figure is a distribution rather than one draw of this noisy machine."""
    cold_start(node, work, "--set", "archive_cache_bytes=67108864",
               *(["--set", f"archive_read_bytes_per_sec={args.replay_cap}"] if args.replay_cap else []))
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    admin.create_topics([NewTopic("live", 1, 1)])["live"].result(30)
    ratios = []
    for round_ in range(args.rounds):
        if args.rounds > 1:
            print(f"latency round {round_ + 1} of {args.rounds}", flush=True)
        idle = produce_at_rate(node.bootstrap, "live", args.rate, args.seconds)
        print(f"produce {idle[0]:.0f} msgs/s, idle:          p50 {idle[1]:6.2f} ms   p99 {idle[2]:6.2f} ms", flush=True)
        fetched_before = metric(node.admin, "silt_archive_fetched_bytes_total")
        stop = multiprocessing.Event()
        reader = multiprocessing.Process(target=replay_forever, args=(node.bootstrap, replay_count, stop, "replay"))
        reader.start()
        time.sleep(1)
        busy = produce_at_rate(node.bootstrap, "live", args.rate, args.seconds)
        fetched = (metric(node.admin, "silt_archive_fetched_bytes_total") - fetched_before) / (args.seconds + 1)
        stop.set()
        reader.join(60)
        print(f"produce {busy[0]:.0f} msgs/s, during replay: p50 {busy[1]:6.2f} ms   p99 {busy[2]:6.2f} ms   "
              f"({busy[2] / idle[2]:.2f}x idle p99; the replay fetched {fetched / 1e6:.1f} MB/s from the store)", flush=True)
        # The machine's own limit: the same produce while the store serves the same bytes a
        # second, through the same proxy, to a client that is not silt (on 2 shared cores the
        # store's and the proxy's work alone move the produce tail).
        stop = multiprocessing.Event()
        rate = multiprocessing.Value("d", 0.0)
        loader = multiprocessing.Process(target=store_load, args=(store_env["AWS_ENDPOINT"], stop, rate, max(fetched, 1e6)))
        loader.start()
        time.sleep(2)
        loaded = produce_at_rate(node.bootstrap, "live", args.rate, args.seconds)
        stop.set()
        loader.join(60)
        ratios.append(busy[2] / loaded[2])
        print(f"produce {loaded[0]:.0f} msgs/s, store busy:    p50 {loaded[1]:6.2f} ms   p99 {loaded[2]:6.2f} ms   "
              f"({loaded[2] / idle[2]:.2f}x idle p99; the store served {rate.value / 1e6:.0f} MB/s of ranged GETs through the proxy, silt idle); "
              f"during replay / store busy: {busy[2] / loaded[2]:.2f}x (bar 1.5)", flush=True)
    if len(ratios) > 1:
        ordered = sorted(ratios)
        print(f"produce p99 during replay over the store-busy p99, {len(ratios)} rounds: median {ordered[len(ordered) // 2]:.2f}x "
              f"(bar 1.5), range {ordered[0]:.2f}x to {ordered[-1]:.2f}x", flush=True)


def latency_only(node, work, store_env, args):
    """Just the produce-latency rounds, on a replay topic of 64 MiB segments made for them."""
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    admin.create_topics([NewTopic("replay", 1, 1, config={"segment.bytes": str(64 << 20)})])["replay"].result(30)
    replay_count = produce_fill(node.bootstrap, args.replay_mib << 20, args.value_bytes, topic="replay")
    node.extra += ["--set", "archive_upload_interval_ms=1000"]
    node.stop()
    node.start()
    archive_everything(node, AdminClient({"bootstrap.servers": node.bootstrap}), "replay")
    print(f"replay topic: {args.replay_mib} MiB archived", flush=True)
    latency_rounds(node, work, store_env, replay_count, args)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "silt"))
    parser.add_argument("--mib", type=int, default=1100, help="MiB produced to the one-partition topic (one full default 1 GiB segment and some)")
    parser.add_argument("--replay-mib", type=int, default=512, help="MiB produced to the one-partition topic of 64 MiB segments")
    parser.add_argument("--wide-mib", type=int, default=512, help="MiB produced to the 32-partition topic of 64 MiB segments")
    parser.add_argument("--first-byte-ms", type=float, default=30.0, help="the proxy's delay before each response")
    parser.add_argument("--conn-mb-s", type=float, default=50.0, help="the proxy's bandwidth cap per connection")
    parser.add_argument("--rate", type=int, default=5000, help="messages/s of the latency test")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--value-bytes", type=int, default=16384,
                        help="record size (large enough that the Python consumer is not the limit)")
    parser.add_argument("--replay-cap", type=int, default=0, help="archive_read_bytes_per_sec during the latency test (0: the default)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the produce-latency test")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a silt setting for the whole run (repeatable)")
    parser.add_argument("--latency-only", action="store_true", help="only the produce-latency rounds (with --rounds)")
    parser.add_argument("--dir", default=str(ROOT / "target" / "bench-tmp"))
    args = parser.parse_args()
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=base))
    moto, moto_env = start_moto(work)
    proxy, env = start_proxy(work, moto_env, args.first_byte_ms, args.conn_mb_s)
    binary = Path(args.binary)
    node = None
    gib = float(1 << 30)
    try:
        print(f"store: moto behind a proxy with {args.first_byte_ms:.0f} ms to first byte and {args.conn_mb_s:.0f} MB/s per connection", flush=True)
        # Default segment.bytes (1 GiB) and upload settings: the economy the bars are about.
        settings = ["--archive", "s3://bench/silt", "--set", "archive_check_interval_ms=200", "--set", "retention_check_interval_ms=200",
                    *(arg for setting in args.set for arg in ("--set", setting))]
        if args.set:
            print(f"silt settings: {', '.join(args.set)}", flush=True)
        node = Node(binary, work / "data", env, settings).start()
        if args.latency_only:
            latency_only(node, work, env, args)
            return
        admin = AdminClient({"bootstrap.servers": node.bootstrap})
        admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(30)
        puts_before = metric(node.admin, "silt_object_store_puts_total")
        count = produce_fill(node.bootstrap, args.mib << 20, args.value_bytes)
        print(f"produced {count} messages of {args.value_bytes} bytes ({args.mib} MiB) to one partition, default settings", flush=True)
        # The first segment fills at 1 GiB, seals, and goes up on its own.
        wait_for(lambda: metric(node.admin, "silt_archive_uploads_total") >= 1, 900, "the first full segment archived")
        puts = metric(node.admin, "silt_object_store_puts_total") - puts_before
        archived = metric(node.admin, "silt_archive_uploaded_bytes_total")
        print(f"economy: {puts:.0f} PUTs for {archived / gib:.2f} GiB archived (a full default segment: parts, sidecar, manifest, "
              f"topic catalog) = {puts / (archived / gib):.1f} PUTs per GiB (bar 24; /metrics says "
              f"{metric(node.admin, 'silt_archive_puts_per_gib_archived'):.1f})", flush=True)
        hot, _ = replay(node.bootstrap, count)
        print(f"default topic, hot read (local log): {hot / 1e6:8.1f} MB/s", flush=True)
        # Two more topics with 64 MiB segments: one partition, and 32 partitions in one consumer.
        for created in admin.create_topics([NewTopic("replay", 1, 1, config={"segment.bytes": str(64 << 20)}),
                                            NewTopic("wide", 32, 1, config={"segment.bytes": str(64 << 20)})]).values():
            created.result(30)
        replay_count = produce_fill(node.bootstrap, args.replay_mib << 20, args.value_bytes, topic="replay")
        replay_hot, _ = replay(node.bootstrap, replay_count, topic="replay")
        print(f"one partition, hot read (local log): {replay_hot / 1e6:8.1f} MB/s   ({args.replay_mib} MiB, 64 MiB segments)", flush=True)
        wide_count = produce_fill(node.bootstrap, args.wide_mib << 20, args.value_bytes, topic="wide", partitions=32)
        wide_hot, _ = replay(node.bootstrap, wide_count, topic="wide", partitions=32)
        print(f"32 partitions, hot read (local log): {wide_hot / 1e6:8.1f} MB/s   ({args.wide_mib} MiB in all)", flush=True)
        # From here on the active segment goes up after a second, so everything can be archived.
        node.extra += ["--set", "archive_upload_interval_ms=1000"]
        node.stop()
        node.start()
        admin = AdminClient({"bootstrap.servers": node.bootstrap})
        for topic in (TOPIC, "replay", "wide"):
            archive_everything(node, admin, topic)

        raw_big = raw_capacity(binary, env, min(args.mib, 1024))
        cold_replay(node, work, "default topic", TOPIC, count, 1, args.value_bytes, hot, raw_big)
        raw_small = raw_capacity(binary, env, 64)
        cold_replay(node, work, "one partition", "replay", replay_count, 1, args.value_bytes, replay_hot, raw_small)
        cold_replay(node, work, "32 partitions", "wide", wide_count, 32, args.value_bytes, wide_hot, raw_small)

        # Random offsets, each in a chunk not read before, prefetch off (a consumer that jumps
        # around would not trigger it; librdkafka's read-ahead would, and fill the cache).
        cold_start(node, work, "--set", "archive_prefetch_chunks=0")
        settle(node)
        chunk_messages = (4 << 20) // (args.value_bytes + 70)  # messages in a 4 MiB chunk, roughly
        gets_before = metric(node.admin, "silt_object_store_gets_total")
        p50, p99, lookups = first_byte_times(node.bootstrap, "replay", replay_count, 40, 2 * chunk_messages)
        gets = metric(node.admin, "silt_object_store_gets_total") - gets_before
        print(f"time to first byte, random offsets, empty cache: p50 {p50:.1f} ms   p99 {p99:.1f} ms   "
              f"{gets / lookups:.1f} GETs per lookup (manifest nodes and sidecars cached after the first of each segment)", flush=True)

        latency_rounds(node, work, env, replay_count, args)
    finally:
        if node is not None and node.process.poll() is None:
            node.stop()
        for process in (proxy, moto):
            process.terminate()
            process.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
