"""The archiver against a real S3-compatible server over HTTP (moto), started and stopped here."""

import json
import time
import urllib.request
from pathlib import Path

from conftest import admin_json, metric, silt_cli, wait_for
from helpers import confluent_produce, create_topic

FAST_ARCHIVE = [
    "--set", "archive_check_interval_ms=200",
    "--set", "archive_upload_interval_ms=1000",
    "--set", "retention_check_interval_ms=200",
]


def partitions(silt, topic):
    status = admin_json(silt, "/v1/status")
    return next(t for t in status["topics"] if t["name"] == topic)["partitions"]


def archived_everything(silt, topic):
    return all(p["archive"] and p["archive"]["archived_next_offset"] == p["high_watermark"] for p in partitions(silt, topic))


def produce_many(bootstrap, topic, count, partitions_count, start=0, value=b"x" * 100):
    confluent_produce(bootstrap, topic, [((start + i) % partitions_count, None, value + b"%d" % (start + i), None, None) for i in range(count)],
                      **{"linger.ms": 20})


def test_every_segment_sidecar_and_manifest_entry_is_in_the_bucket(silt_factory, s3):
    silt = silt_factory(extra_args=["--archive", s3.url(), *FAST_ARCHIVE], env=s3.env)
    create_topic(silt.bootstrap, "tiered", partitions=3, config={"segment.bytes": "131072"})
    produce_many(silt.bootstrap, "tiered", 120_000, 3)
    wait_for(lambda: archived_everything(silt, "tiered"), timeout=180, what="the archive catches up with the log")
    # Every local segment is in the bucket, byte for byte.
    data = Path(silt.data_dir)
    keys = s3.keys("cluster-a/")
    segment_keys = [k for k in keys if k.endswith(".log")]
    sidecars = [k for k in keys if k.endswith(".sidecar")]
    local = sorted((data / "topics" / "tiered").glob("*/*.log"))
    sealed = [p for p in local if p.stat().st_size > 0]
    assert len(segment_keys) == len(sidecars) >= len(sealed) - 3 > 30
    by_base = {}
    for key in segment_keys:
        partition = key.split("/")[-3]
        base = int(Path(key).name.split("-")[0])
        by_base[(partition, base)] = key
    for path in sealed:
        key = by_base.get((path.parent.name, int(path.stem)))
        if key is None:
            continue  # the active segment, rolled after this listing
        body = s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
        assert body == path.read_bytes(), f"{key} differs from {path}"
    # The manifests agree, and silt's own check finds every object whole.
    listing = silt_cli("archive", "ls", "--archive", s3.url(), env=s3.env)
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines() if line.startswith("tiered ")]
    assert sorted((int(r[1]), int(r[3]), int(r[4])) for r in rows) == [(p, 0, 40_000) for p in range(3)]
    assert sum(int(r[2]) for r in rows) == len(segment_keys)
    verify = silt_cli("archive", "verify", "--archive", s3.url(), env=s3.env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "all good" in verify.stdout
    catalog = [k for k in keys if "/_silt/topics/" in k]
    assert len(catalog) == 1 and "tiered_" in catalog[0]

    # Deleting the topic deletes its archive: every object, the catalog entry last.
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    admin.delete_topics(["tiered"])["tiered"].result(30)
    wait_for(lambda: not any("tiered" in k for k in s3.keys("cluster-a/")), timeout=60,
             what="the deleted topic's objects to leave the bucket")
    listing = silt_cli("archive", "ls", "--archive", s3.url(), env=s3.env)
    assert listing.returncode == 0 and "tiered" not in listing.stdout, listing.stdout + listing.stderr
    assert metric(silt, "silt_archive_deleted_topic_objects_total") >= 2 * len(segment_keys)


def test_a_bucket_outage_does_not_stop_produce_and_the_backlog_drains(silt_factory, s3):
    silt = silt_factory(extra_args=["--archive", s3.url(), *FAST_ARCHIVE], env=s3.env)
    create_topic(silt.bootstrap, "outage", partitions=2, config={"segment.bytes": "65536", "retention.local.target.ms": "1"})
    produce_many(silt.bootstrap, "outage", 20_000, 2)
    wait_for(lambda: archived_everything(silt, "outage"), timeout=120, what="first batch archived")
    s3.proxy.stop()
    failures_before = metric(silt, "silt_archive_upload_failures_total")
    produce_many(silt.bootstrap, "outage", 20_000, 2, start=20_000)  # acks=all: the log takes them
    wait_for(lambda: metric(silt, "silt_archive_upload_failures_total") > failures_before, timeout=60, what="uploads failing")
    wait_for(lambda: metric(silt, "silt_archive_backlog_segments") > 0, timeout=30, what="a backlog")
    # Local retention is 1 ms, yet nothing that is not archived goes.
    for p in partitions(silt, "outage"):
        assert p["local_start_offset"] <= p["archive"]["archived_next_offset"] < p["high_watermark"], p
    time.sleep(2)  # a few more failed rounds while the bucket is away
    for p in partitions(silt, "outage"):
        assert p["local_start_offset"] <= p["archive"]["archived_next_offset"], p
    s3.proxy.start()
    wait_for(lambda: archived_everything(silt, "outage"), timeout=180, what="the backlog drains")
    assert metric(silt, "silt_archive_backlog_segments") == 0
    verify = silt_cli("archive", "verify", "--archive", s3.url(), env=s3.env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    rows = [line.split() for line in silt_cli("archive", "ls", "--archive", s3.url(), env=s3.env).stdout.splitlines() if line.startswith("outage ")]
    assert sorted((int(r[3]), int(r[4])) for r in rows) == [(0, 20_000), (0, 20_000)], "nothing lost"


def test_sigkill_mid_upload_leaves_no_duplicates_and_no_gaps(silt_factory, s3):
    args = ["--archive", s3.url(), *FAST_ARCHIVE, "--set", "archive_uploads_in_flight_max=1"]
    silt = silt_factory(extra_args=args, env=s3.env)
    create_topic(silt.bootstrap, "crashy", partitions=4, config={"segment.bytes": "32768"})
    produce_many(silt.bootstrap, "crashy", 60_000, 4)
    wait_for(lambda: (metric(silt, "silt_archive_uploads_total") or 0) >= 10, timeout=60, what="uploads under way")
    assert metric(silt, "silt_archive_backlog_segments") > 0, "killed with uploads still to do"
    silt.restart(hard=True)
    wait_for(lambda: archived_everything(silt, "crashy"), timeout=240, what="archive catches up after the crash")
    verify = silt_cli("archive", "verify", "--archive", s3.url(), env=s3.env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    keys = s3.keys("cluster-a/")
    rows = [line.split() for line in silt_cli("archive", "ls", "--archive", s3.url(), env=s3.env).stdout.splitlines() if line.startswith("crashy ")]
    assert sum(int(r[2]) for r in rows) == len([k for k in keys if k.endswith(".log")]), "no orphaned segment objects"
    assert sorted((int(r[3]), int(r[4])) for r in rows) == [(0, 15_000)] * 4


def test_verify_names_an_altered_object(silt_factory, s3):
    silt = silt_factory(extra_args=["--archive", s3.url(), *FAST_ARCHIVE], env=s3.env)
    create_topic(silt.bootstrap, "victim", partitions=1, config={"segment.bytes": "16384"})
    for round in range(6):  # separate flushes: separate batches, several segments
        produce_many(silt.bootstrap, "victim", 400, 1, start=round * 400)
    wait_for(lambda: archived_everything(silt, "victim"), timeout=120, what="archived")
    assert admin_json(silt, "/v1/archive/verify")["state"] == "never_run"
    good = verify_over_http(silt, "victim")
    assert (good["state"], good["faults"], good["partitions"]) == ("ok", [], 1), good
    assert good["bytes"] == good["bytes_total"] > 0 and good["segments"] >= 2, good
    key = sorted(k for k in s3.keys("cluster-a/") if k.endswith(".log"))[1]
    body = bytearray(s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x20
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=bytes(body))
    verify = silt_cli("archive", "verify", "victim", "--archive", s3.url(), env=s3.env)
    assert verify.returncode == 1
    assert key.split("cluster-a/", 1)[1] in verify.stdout and "CRC" in verify.stdout, verify.stdout
    # The running broker finds it too, over the admin API, and says so in /metrics and /v1/status.
    run = verify_over_http(silt, "victim")
    assert run["state"] == "faults" and run["segments"] == run["segments_total"] >= 2, run
    assert run["faults_total"] == len(run["faults"]) >= 1
    assert any(key.split("cluster-a/", 1)[1] in f and "CRC" in f for f in run["faults"]), run["faults"]
    assert metric(silt, "silt_archive_verify_faults") == run["faults_total"]
    assert admin_json(silt, "/v1/status")["archive_verify"]["state"] == "faults"
    failed = verify_over_http(silt, "nope")
    assert (failed["state"], failed["error"]) == ("failed", "topic 'nope' is not in the archive"), failed


def verify_over_http(silt, topic):
    """Starts a verification over the admin API and waits for its end; returns the run."""
    request = urllib.request.Request(f"{silt.admin}/v1/archive/verify?topic={topic}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
        assert json.loads(response.read())["running"] is True
    return wait_for(lambda: (lambda run: None if run["running"] else run)(admin_json(silt, "/v1/archive/verify")),
                    timeout=60, what="the verification done")


def test_a_wrong_bucket_or_dead_endpoint_is_named_at_startup(s3, tmp_path):
    """`silt serve --archive s3://no-such-bucket/x` refuses to start and says why, instead of
    serving and failing every upload later."""
    import os
    import subprocess
    from conftest import SILT_BIN, free_port

    def serve(env, *extra):
        args = [str(SILT_BIN), "serve", "--data-dir", str(tmp_path / f"d{len(os.listdir(tmp_path))}"),
                "--kafka-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--rpc-addr", "127.0.0.1:0", *extra]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SILT_") and not k.startswith("AWS_")}
        return subprocess.run(args, env={**clean, **env}, capture_output=True, text=True, timeout=60)

    missing = serve(s3.env, "--archive", "s3://no-such-bucket/x")
    assert missing.returncode != 0
    assert "no-such-bucket" in missing.stderr and f"127.0.0.1:{s3.proxy.port}" in missing.stderr, missing.stderr
    assert "NoSuchBucket" in missing.stderr or "does not exist" in missing.stderr, missing.stderr
    dead = {**s3.env, "AWS_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    unreachable = serve(dead, "--archive", s3.url(), "--set", "archive_startup_check_ms=2000")
    assert unreachable.returncode != 0
    assert "did not answer" in unreachable.stderr or "connect" in unreachable.stderr.lower(), unreachable.stderr
