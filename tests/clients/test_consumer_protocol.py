"""The KIP-848 consumer group protocol (issue #15) with librdkafka's `group.protocol=consumer`:
members sharing partitions without ever owning one twice, members leaving and crashing,
regular-expression subscriptions, an empty classic group taken over, and the admin views."""

import subprocess
import time

from confluent_kafka import ConsumerGroupType
from confluent_kafka.admin import AdminClient

from conftest import SILT_BIN, wait_for
from helpers import create_topic
from test_groups import Member, consumed, expected_values, produce_numbered

FAST = [
    "--set", "group_initial_rebalance_delay_ms=0",
    "--set", "group_consumer_heartbeat_interval_ms=500",
    "--set", "group_consumer_session_timeout_ms=6000",
]


def member(bootstrap, group, topic, name, **options):
    return Member(bootstrap, group, topic, name, protocol="consumer", **options)


def ownership_overlaps(members):
    """(partition, member, member) for every moment two members held one partition, from the
    members' assigned/revoked events and their monotonic clocks."""
    intervals = {}
    for m in members:
        held = {}
        for e in list(m.events):
            if e["event"] == "assigned":
                for p in e["topics"]:
                    held[p] = e["t"]
            elif e["event"] == "revoked":
                for p in e["topics"]:
                    if p in held:
                        intervals.setdefault(p, []).append((held.pop(p), e["t"], m.name))
        # What a member held when it died (or stopped) it held until then.
        for p, start in held.items():
            intervals.setdefault(p, []).append((start, m.ended_at, m.name))
    overlaps = []
    for p, spans in intervals.items():
        spans.sort()
        for (s1, e1, m1), (s2, e2, m2) in zip(spans, spans[1:]):
            if s2 < e1 and m1 != m2:
                overlaps.append((p, m1, m2))
    return overlaps


def longest_handover(members):
    """The longest time a partition that moved was owned by no one: from its old owner's
    revocation to its new owner's assignment."""
    revoked, assigned = {}, {}
    for m in members:
        for e in list(m.events):
            for p in e.get("topics", []):
                if e["event"] == "revoked":
                    revoked.setdefault(p, []).append(e["t"])
                elif e["event"] == "assigned":
                    assigned.setdefault(p, []).append(e["t"])
    longest = 0.0
    for p, times in revoked.items():
        for t in times:
            later = [a for a in assigned.get(p, []) if a >= t]
            if later:
                longest = max(longest, min(later) - t)
    return longest


def never_emptied(m):
    """True when the member, once it held partitions, never held none (it kept consuming)."""
    held, started = set(), False
    for e in list(m.events):
        if e["event"] == "assigned":
            held |= set(e["topics"])
            started = True
        elif e["event"] == "revoked":
            held -= set(e["topics"])
            if started and not held:
                return False
    return True


def test_two_then_five_members_share_twelve_partitions_without_overlap(silt_factory):
    silt = silt_factory(extra_args=FAST)
    create_topic(silt.bootstrap, "events", partitions=12)
    produce_numbered(silt.bootstrap, "events", 12, 0, 100)
    a, b = (member(silt.bootstrap, "kip848", "events", n) for n in "ab")
    wait_for(lambda: len(a.assignment()) == 6 and len(b.assignment()) == 6, timeout=30, what="two members, 6 each")
    wait_for(lambda: set(consumed([a, b])) >= expected_values(12, 100), timeout=60, what="first batch consumed")
    more = [member(silt.bootstrap, "kip848", "events", n) for n in "cde"]
    everyone = [a, b, *more]
    wait_for(lambda: sorted(len(m.assignment()) for m in everyone) == [2, 2, 2, 3, 3], timeout=30,
             what="five members, 2 or 3 each")
    assert set().union(*(m.assignment() for m in everyone)) == set(range(12))
    produce_numbered(silt.bootstrap, "events", 12, 100, 100)
    wait_for(lambda: set(consumed(everyone)) >= expected_values(12, 200), timeout=60, what="second batch consumed")
    counts = consumed(everyone)
    assert max(counts.values()) == 1, [v for v, n in counts.items() if n > 1][:10]
    assert ownership_overlaps(everyone) == []
    assert never_emptied(a) and never_emptied(b), "the first members kept partitions through the rebalance"
    # A partition that moves is unowned for about a heartbeat interval (0.5 s) at most: its old
    # owner's next heartbeat frees it, the new owner's next heartbeat takes it.
    print(f"longest handover {longest_handover(everyone):.3f} s")
    assert longest_handover(everyone) < 2.5, longest_handover(everyone)
    for m in everyone:
        m.stop()


def test_a_member_leaving_and_one_crashing_resume_from_committed_offsets(silt_factory):
    silt = silt_factory(extra_args=FAST)
    create_topic(silt.bootstrap, "jobs", partitions=6)
    produce_numbered(silt.bootstrap, "jobs", 6, 0, 200)
    members = [member(silt.bootstrap, "workers848", "jobs", n) for n in "abc"]
    wait_for(lambda: sorted(len(m.assignment()) for m in members) == [2, 2, 2], timeout=30, what="2 each")
    wait_for(lambda: set(consumed(members)) >= expected_values(6, 200), timeout=60, what="first batch consumed")
    members[0].stop()  # leaves (epoch -1)
    wait_for(lambda: sorted(len(m.assignment()) for m in members[1:]) == [3, 3], timeout=30, what="3 each after a leave")
    victim = members[1]
    victim.kill()  # no leave: its session (6 s) runs out
    killed = time.monotonic()
    wait_for(lambda: members[2].assignment() == set(range(6)), timeout=30, what="the last member owns all")
    took = time.monotonic() - killed
    assert 4.0 < took < 20.0, f"reassigned after {took:.1f}s; the session timeout is 6 s"
    produce_numbered(silt.bootstrap, "jobs", 6, 200, 200)
    wait_for(lambda: set(consumed(members)) >= expected_values(6, 400), timeout=60, what="second batch consumed")
    counts = consumed(members)
    duplicates = [v for v, n in counts.items() if n > 1]
    assert len(duplicates) <= 1, duplicates  # at most the one in flight when the victim died
    assert ownership_overlaps(members) == []
    members[2].stop()


def test_a_regex_subscription_picks_up_a_topic_created_later(silt_factory):
    silt = silt_factory(extra_args=FAST)
    create_topic(silt.bootstrap, "metrics-cpu", partitions=3)
    create_topic(silt.bootstrap, "logs", partitions=2)
    m = member(silt.bootstrap, "regex848", "^metrics-.*", "r")
    wait_for(lambda: m.topic_assignment() == {f"metrics-cpu:{p}" for p in range(3)}, timeout=30, what="metrics-cpu")
    create_topic(silt.bootstrap, "metrics-mem", partitions=2)
    produce_numbered(silt.bootstrap, "metrics-mem", 2, 0, 10)
    wait_for(lambda: {f"metrics-mem:{p}" for p in range(2)} <= m.topic_assignment(), timeout=30,
             what="the new topic assigned")
    wait_for(lambda: len([e for e in m.messages() if e["topic"] == "metrics-mem"]) == 20, timeout=30,
             what="its records consumed")
    assert not any(t.startswith("logs:") for t in m.topic_assignment())
    m.stop()


def test_admin_views_and_an_empty_classic_group_taken_over(silt_factory):
    silt = silt_factory(extra_args=FAST)
    create_topic(silt.bootstrap, "orders", partitions=4)
    produce_numbered(silt.bootstrap, "orders", 4, 0, 50)
    # A classic group consumes half, commits, and goes.
    classic = Member(silt.bootstrap, "billing", "orders", "classic")
    wait_for(lambda: len(classic.messages()) >= 200, timeout=60, what="the classic member consumed")
    classic.stop()
    before = {(e["partition"], e["offset"]) for e in classic.messages()}
    # The empty group becomes a consumer group; its committed offsets stay.
    produce_numbered(silt.bootstrap, "orders", 4, 50, 50)
    new = member(silt.bootstrap, "billing", "orders", "new")
    wait_for(lambda: set(consumed([classic, new])) >= expected_values(4, 100), timeout=60, what="the rest consumed")
    resumed = {(e["partition"], e["offset"]) for e in new.messages()}
    assert not (resumed & before), "nothing consumed twice: the new member resumed at the committed offsets"

    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    listed = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(30)
    assert [g.group_id for g in listed.valid] == ["billing"]
    assert listed.valid[0].type == ConsumerGroupType.CONSUMER
    described = admin.describe_consumer_groups(["billing"])["billing"].result(30)
    assert described.type == ConsumerGroupType.CONSUMER
    assert len(described.members) == 1
    assert sorted(tp.partition for tp in described.members[0].assignment.topic_partitions) == [0, 1, 2, 3]
    out = subprocess.run([str(SILT_BIN), "group", "list", "--brokers", silt.bootstrap], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    row = next(line.split() for line in out.stdout.splitlines() if line.startswith("billing"))
    assert "consumer" in row, out.stdout
    out = subprocess.run([str(SILT_BIN), "group", "describe", "billing", "--brokers", silt.bootstrap],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "EPOCH" in out.stdout and "orders" in out.stdout, out.stdout
    new.stop()


def test_the_group_is_durable_across_a_broker_restart(silt_factory):
    silt = silt_factory(extra_args=FAST)
    create_topic(silt.bootstrap, "ledger", partitions=4)
    produce_numbered(silt.bootstrap, "ledger", 4, 0, 100)
    members = [member(silt.bootstrap, "durable848", "ledger", n) for n in "ab"]
    wait_for(lambda: sorted(len(m.assignment()) for m in members) == [2, 2], timeout=30, what="2 each")
    wait_for(lambda: set(consumed(members)) >= expected_values(4, 100), timeout=60, what="first batch consumed")
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    epoch_before = admin.describe_consumer_groups(["durable848"])["durable848"].result(30)
    silt.restart(hard=True)  # SIGKILL: the group comes back from the group log
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    after = admin.describe_consumer_groups(["durable848"])["durable848"].result(30)
    assert sorted(m.member_id for m in after.members) == sorted(m.member_id for m in epoch_before.members)
    produce_numbered(silt.bootstrap, "ledger", 4, 100, 100)
    wait_for(lambda: set(consumed(members)) >= expected_values(4, 200), timeout=60, what="consumed after the restart")
    counts = consumed(members)
    assert len([v for v, n in counts.items() if n > 1]) <= 2, "at most what was in flight at the kill"
    assert ownership_overlaps(members) == []
    for m in members:
        m.stop()


def test_a_consumer_group_moves_with_its_coordinator(cluster_factory):
    cluster = cluster_factory(extra_args=FAST)
    create_topic(cluster.bootstrap, "shared", partitions=4, replication_factor=3)
    produce_numbered(cluster.bootstrap, "shared", 4, 0, 100)
    members = [member(cluster.bootstrap, "moving848", "shared", n) for n in "ab"]
    wait_for(lambda: sorted(len(m.assignment()) for m in members) == [2, 2], timeout=60, what="2 each")
    wait_for(lambda: set(consumed(members)) >= expected_values(4, 100), timeout=60, what="first batch consumed")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    before = admin.describe_consumer_groups(["moving848"])["moving848"].result(30)
    coordinator = before.coordinator.id
    cluster.nodes[coordinator].kill()
    # Another node takes the group over from the replicated group log: same members, and
    # they keep consuming.
    produce_numbered(cluster.bootstrap, "shared", 4, 100, 100)
    wait_for(lambda: set(consumed(members)) >= expected_values(4, 200), timeout=90, what="consumed after the kill")
    after = admin.describe_consumer_groups(["moving848"])["moving848"].result(30)
    assert after.coordinator.id != coordinator
    assert sorted(m.member_id for m in after.members) == sorted(m.member_id for m in before.members)
    counts = consumed(members)
    assert len([v for v, n in counts.items() if n > 1]) <= 2
    assert ownership_overlaps(members) == []
    for m in members:
        m.stop()


def test_a_classic_group_upgraded_member_by_member(silt_factory):
    silt = silt_factory(extra_args=FAST)
    create_topic(silt.bootstrap, "rolling", partitions=6)
    produce_numbered(silt.bootstrap, "rolling", 6, 0, 100)
    # A classic group (cooperative-sticky) at work.
    a, b = (Member(silt.bootstrap, "upgrading", "rolling", n, strategy="cooperative-sticky") for n in "ab")
    wait_for(lambda: sorted(len(m.assignment()) for m in (a, b)) == [3, 3], timeout=30, what="classic: 3 each")
    wait_for(lambda: set(consumed([a, b])) >= expected_values(6, 100), timeout=60, what="classic members consumed")
    # A member of the new protocol joins: the group is upgraded as it is, the classic members
    # give up what the broker's assignor moves, and everyone keeps consuming.
    c = member(silt.bootstrap, "upgrading", "rolling", "c")
    wait_for(lambda: sorted(len(m.assignment()) for m in (a, b, c)) == [2, 2, 2], timeout=30,
             what="two classic members and one of the new protocol, 2 each")
    produce_numbered(silt.bootstrap, "rolling", 6, 100, 100)
    wait_for(lambda: set(consumed([a, b, c])) >= expected_values(6, 200), timeout=60, what="consumed across protocols")
    # The classic members are replaced one by one.
    a.stop()
    d = member(silt.bootstrap, "upgrading", "rolling", "d")
    wait_for(lambda: sorted(len(m.assignment()) for m in (b, c, d)) == [2, 2, 2], timeout=30, what="a replaced by d")
    b.stop()
    e = member(silt.bootstrap, "upgrading", "rolling", "e")
    wait_for(lambda: sorted(len(m.assignment()) for m in (c, d, e)) == [2, 2, 2], timeout=30, what="b replaced by e")
    produce_numbered(silt.bootstrap, "rolling", 6, 200, 100)
    everyone = [a, b, c, d, e]
    try:
        wait_for(lambda: set(consumed(everyone)) >= expected_values(6, 300), timeout=60, what="all consumed")
    except AssertionError:
        missing = sorted(expected_values(6, 300) - set(consumed(everyone)))
        raise AssertionError(f"missing {len(missing)}: {missing[:5]}..{missing[-5:]}; held: "
                             f"{[(m.name, sorted(m.topic_assignment())) for m in everyone]}")
    counts = consumed(everyone)
    assert len([v for v, n in counts.items() if n > 1]) <= 3, "only what was in flight at a hand-over"
    assert ownership_overlaps(everyone) == []
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    described = admin.describe_consumer_groups(["upgrading"])["upgrading"].result(30)
    assert described.type == ConsumerGroupType.CONSUMER
    assert len(described.members) == 3
    for m in (c, d, e):
        m.stop()
