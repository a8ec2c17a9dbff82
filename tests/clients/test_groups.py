"""Consumer groups with real clients: joins and rebalances, a member killed without leaving, the
broker killed and restarted, cooperative-sticky, static membership, and the group admin views."""

import base64
import json
import signal
import subprocess
import sys
import re
import threading
import time
from collections import Counter
from pathlib import Path

from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient

from conftest import SILT_BIN, run_node, wait_for
from helpers import confluent_produce, create_topic

HERE = Path(__file__).resolve().parent
GROUP_BROKER_ARGS = ["--set", "group_initial_rebalance_delay_ms=0"]


class Member:
    """A group member process (tests/clients/group_member.py) and the events it reported."""

    def __init__(self, bootstrap, group, topic, name, **options):
        args = [sys.executable, str(HERE / "group_member.py"), "--bootstrap", bootstrap, "--group", group,
                "--topic", topic, "--name", name]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        self.name = name
        self.events = []
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stdout:
            self.events.append(json.loads(line))

    def messages(self):
        return [e for e in self.events if e["event"] == "message"]

    def assignment(self):
        """Partitions held now, from the assigned/revoked events."""
        held = set()
        for e in list(self.events):
            if e["event"] == "assigned":
                held |= set(e["partitions"])
            elif e["event"] == "revoked":
                held -= set(e["partitions"])
        return held

    def topic_assignment(self):
        """"topic:partition" held now."""
        held = set()
        for e in list(self.events):
            if e["event"] == "assigned":
                held |= set(e["topics"])
            elif e["event"] == "revoked":
                held -= set(e["topics"])
        return held

    def revocations(self):
        return [e["partitions"] for e in self.events if e["event"] == "revoked"]

    ended_at = float("inf")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        self.ended_at = min(self.ended_at, time.monotonic())

    def kill(self):
        self.process.kill()
        self.process.wait(30)
        self.ended_at = min(self.ended_at, time.monotonic())


def produce_numbered(bootstrap, topic, partitions, start, count):
    """Values 'p:i' with i counting per partition from `start`."""
    records = [(p, None, b"%d:%d" % (p, i), None, None) for i in range(start, start + count) for p in range(partitions)]
    confluent_produce(bootstrap, topic, records)


def consumed(members):
    return Counter(m["value"] for member in members for m in member.messages())


def expected_values(partitions, count):
    return {f"{p}:{i}" for p in range(partitions) for i in range(count)}


def test_members_join_and_leave_and_every_message_is_consumed_once(silt_factory):
    silt = silt_factory(extra_args=GROUP_BROKER_ARGS)
    create_topic(silt.bootstrap, "work", partitions=6)
    produce_numbered(silt.bootstrap, "work", 6, 0, 500)
    a = Member(silt.bootstrap, "workers", "work", "a")
    wait_for(lambda: a.assignment() == set(range(6)), what="a owns all 6 partitions")
    wait_for(lambda: len(a.messages()) > 300, what="a consumes")
    b = Member(silt.bootstrap, "workers", "work", "b")
    wait_for(lambda: len(a.assignment()) == 3 and len(b.assignment()) == 3, what="two members, 3 partitions each")
    produce_numbered(silt.bootstrap, "work", 6, 500, 500)
    c = Member(silt.bootstrap, "workers", "work", "c")
    wait_for(lambda: sorted(len(m.assignment()) for m in (a, b, c)) == [2, 2, 2], what="three members, 2 each")
    assert set().union(*(m.assignment() for m in (a, b, c))) == set(range(6))
    produce_numbered(silt.bootstrap, "work", 6, 1000, 500)
    wait_for(lambda: set(consumed([a, b, c])) >= expected_values(6, 1500), timeout=60, what="all messages consumed")
    counts = consumed([a, b, c])
    assert set(counts) == expected_values(6, 1500)
    assert max(counts.values()) == 1, f"duplicates: {[v for v, n in counts.items() if n > 1][:10]}"
    # Each partition's messages were consumed in order, whoever owned it when.
    for p in range(6):
        offsets = sorted((m["offset"], m["value"]) for member in (a, b, c) for m in member.messages() if m["partition"] == p)
        assert [v for _, v in offsets] == [f"{p}:{i}" for i in range(1500)]
    for member in (a, b, c):
        member.stop()


def test_a_killed_member_is_evicted_and_its_partitions_move(silt_factory):
    silt = silt_factory(extra_args=GROUP_BROKER_ARGS)
    create_topic(silt.bootstrap, "evict", partitions=6)
    produce_numbered(silt.bootstrap, "evict", 6, 0, 200)
    members = [Member(silt.bootstrap, "evictors", "evict", name) for name in "abc"]
    wait_for(lambda: sorted(len(m.assignment()) for m in members) == [2, 2, 2], what="three members, 2 each")
    wait_for(lambda: set(consumed(members)) >= expected_values(6, 200), timeout=60, what="first batch consumed")
    victim = members[2]
    orphaned = victim.assignment()
    victim.kill()  # no LeaveGroup: only the session timeout (6 s) tells the coordinator
    killed_at = time.monotonic()
    survivors = members[:2]
    wait_for(lambda: set().union(*(m.assignment() for m in survivors)) == set(range(6)), timeout=30, what="partitions reassigned")
    took = time.monotonic() - killed_at
    assert 4.0 < took < 20.0, f"reassigned after {took:.1f}s; the session timeout is 6 s"
    produce_numbered(silt.bootstrap, "evict", 6, 200, 200)
    wait_for(lambda: set(consumed(members)) >= expected_values(6, 400), timeout=60, what="second batch consumed")
    counts = consumed(members)
    assert set(counts) == expected_values(6, 400)
    duplicates = [v for v, n in counts.items() if n > 1]
    # Written-then-committed: at most the one message in flight when the victim died.
    assert len(duplicates) <= 1, duplicates
    assert all(int(v.split(":")[0]) in orphaned for v in duplicates)
    for member in survivors:
        member.stop()


def test_consumers_resume_from_committed_offsets_after_the_broker_is_killed(silt_factory):
    silt = silt_factory(extra_args=GROUP_BROKER_ARGS)
    create_topic(silt.bootstrap, "crash", partitions=4)
    produce_numbered(silt.bootstrap, "crash", 4, 0, 300)
    members = [Member(silt.bootstrap, "crashers", "crash", name) for name in "ab"]
    wait_for(lambda: set(consumed(members)) >= expected_values(4, 300), timeout=60, what="consumed before the crash")
    before = len(consumed(members))
    silt.restart(hard=True)
    # The group came back from the group log (the coordinator names how many it took up).
    assert re.search(r"coordinating the groups of a group-log partition .*groups=1", silt.log_text())
    produce_numbered(silt.bootstrap, "crash", 4, 300, 300)
    wait_for(lambda: set(consumed(members)) >= expected_values(4, 600), timeout=90, what="consumed after the restart")
    counts = consumed(members)
    assert set(counts) == expected_values(4, 600)
    # Committed offsets survived: nothing consumed before the crash came back, bar a message
    # whose commit the crash interrupted (one per member at most).
    duplicates = [v for v, n in counts.items() if n > 1]
    assert len(duplicates) <= len(members), duplicates
    assert before == 1200
    for member in members:
        member.stop()


def test_cooperative_sticky_moves_only_what_must_move(silt_factory):
    silt = silt_factory(extra_args=GROUP_BROKER_ARGS)
    create_topic(silt.bootstrap, "coop", partitions=6)
    a = Member(silt.bootstrap, "cooperators", "coop", "a", strategy="cooperative-sticky")
    wait_for(lambda: a.assignment() == set(range(6)), what="a owns all")
    b = Member(silt.bootstrap, "cooperators", "coop", "b", strategy="cooperative-sticky")
    wait_for(lambda: len(a.assignment()) == 3 and len(b.assignment()) == 3, timeout=30, what="incremental rebalance")
    # Incremental: a gave up exactly the three partitions b took, and never the ones it kept.
    revoked = [set(r) for r in a.revocations() if r]
    assert revoked == [b.assignment()], (revoked, a.assignment(), b.assignment())
    produce_numbered(silt.bootstrap, "coop", 6, 0, 100)
    wait_for(lambda: set(consumed([a, b])) >= expected_values(6, 100), timeout=60, what="consumed")
    a.stop()
    b.stop()


def test_a_static_member_rejoins_without_a_rebalance(silt_factory):
    silt = silt_factory(extra_args=GROUP_BROKER_ARGS)
    create_topic(silt.bootstrap, "static", partitions=4)
    a = Member(silt.bootstrap, "statics", "static", "a", instance="host-a", session_timeout_ms=30000)
    b = Member(silt.bootstrap, "statics", "static", "b", instance="host-b", session_timeout_ms=30000)
    wait_for(lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2, timeout=30, what="two static members")
    b_revocations = len(b.revocations())
    a_partitions = a.assignment()
    a.kill()  # a static member does not leave the group on exit
    a2 = Member(silt.bootstrap, "statics", "static", "a2", instance="host-a", session_timeout_ms=30000)
    wait_for(lambda: a2.assignment() == a_partitions, timeout=20, what="the restarted static member gets its partitions back")
    produce_numbered(silt.bootstrap, "static", 4, 0, 50)
    wait_for(lambda: set(consumed([a2, b])) >= expected_values(4, 50), timeout=60, what="consumed")
    assert len(b.revocations()) == b_revocations, "b saw no rebalance"
    assert b.assignment() == set(range(4)) - a_partitions
    a2.stop()
    b.stop()


def test_kafka_python_group_members_and_admin_views(silt_factory):
    silt = silt_factory(extra_args=GROUP_BROKER_ARGS)
    create_topic(silt.bootstrap, "kpg", partitions=4)
    produce_numbered(silt.bootstrap, "kpg", 4, 0, 250)
    members = [Member(silt.bootstrap, "kp-group", "kpg", name, client="kafka-python") for name in "ab"]
    wait_for(lambda: set(consumed(members)) >= expected_values(4, 250), timeout=90, what="kafka-python members consume")
    wait_for(lambda: sorted(len(m.assignment()) for m in members) == [2, 2], timeout=30, what="2 + 2")
    assert max(consumed(members).values()) == 1
    admin = KafkaAdminClient(bootstrap_servers=silt.bootstrap)
    try:
        groups = {g["group_id"]: g for g in admin.list_groups()}
        assert groups["kp-group"]["protocol_type"] == "consumer", groups
        assert groups["kp-group"]["group_state"] == "Stable", groups
        offsets = admin.list_group_offsets({"kp-group": None})["kp-group"]
        assert {tp.partition: o.offset for tp, o in offsets.items()} == {p: 250 for p in range(4)}
        described = admin.describe_groups(["kp-group"])
        described = described[0] if isinstance(described, list) else described["kp-group"]
        assert described["group_state"] == "Stable" and len(described["members"]) == 2, described
    finally:
        admin.close()
    for member in members:
        member.stop()


def test_kafkajs_consumer_group(silt_factory):
    silt = silt_factory(extra_args=GROUP_BROKER_ARGS)
    create_topic(silt.bootstrap, "jsg", partitions=3)
    produce_numbered(silt.bootstrap, "jsg", 3, 0, 100)
    out = run_node("consume.js", {"brokers": [silt.bootstrap], "topic": "jsg", "groupId": "js-group", "count": 300})
    values = [base64.b64decode(v).decode() for v in out["values"]]
    assert sorted(values) == sorted(expected_values(3, 100))
    assert out["committed"] == {"0": "100", "1": "100", "2": "100"}


def test_group_cli_describe_seek_delete(silt_factory):
    silt = silt_factory(extra_args=GROUP_BROKER_ARGS)
    create_topic(silt.bootstrap, "cli", partitions=2)
    produce_numbered(silt.bootstrap, "cli", 2, 0, 100)
    member = Member(silt.bootstrap, "cli-group", "cli", "m")
    wait_for(lambda: set(consumed([member])) >= expected_values(2, 100), timeout=60, what="consumed")
    produce_numbered(silt.bootstrap, "cli", 2, 100, 10)
    wait_for(lambda: len(consumed([member])) == 220, timeout=60, what="caught up")

    def cli(*args):
        return subprocess.run([str(SILT_BIN), "group", *args, "--brokers", silt.bootstrap], capture_output=True, text=True, timeout=60)

    out = cli("describe", "cli-group")
    assert out.returncode == 0, out.stderr
    assert "Stable" in out.stdout and "MEMBERS      1" in out.stdout
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("cli ")]
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [("0", "110", "110", "0"), ("1", "110", "110", "0")], out.stdout
    refused = cli("seek", "cli-group", "--topic", "cli", "--to", "start")
    assert refused.returncode != 0 and "active members" in refused.stderr, refused.stderr
    refused = cli("delete", "cli-group")
    assert refused.returncode != 0 and "active members" in refused.stdout, refused.stdout
    member.stop()
    wait_for(lambda: "Empty" in cli("describe", "cli-group").stdout, what="group empty after leave")
    moved = cli("seek", "cli-group", "--topic", "cli", "--to", "40")
    assert moved.returncode == 0, moved.stderr
    rows = [line.split() for line in cli("describe", "cli-group").stdout.splitlines() if line.startswith("cli ")]
    assert [(r[2], r[4]) for r in rows] == [("40", "70"), ("40", "70")], "committed 40, lag 70"
    listed = cli("list")
    assert "cli-group" in listed.stdout and "Empty" in listed.stdout
    assert cli("delete", "cli-group").returncode == 0
    assert "cli-group" not in cli("list").stdout
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    assert "cli-group" not in [g.group_id for g in admin.list_consumer_groups().result(10).valid]
