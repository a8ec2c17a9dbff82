"""Kafka requests that no client library here exposes, spoken on the wire by hand."""

import socket
import struct

OFFSET_FOR_LEADER_EPOCH = 23


def _string(s):
    data = s.encode()
    return struct.pack(">h", len(data)) + data


def _request(host, port, api_key, version, body, correlation_id=1):
    header = struct.pack(">hhi", api_key, version, correlation_id) + _string("silt-tests")
    payload = header + body
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _read(s, 4))[0]
        response = _read(s, size)
    got = struct.unpack(">i", response[:4])[0]
    assert got == correlation_id, f"correlation id {got}, sent {correlation_id}"
    return response[4:]


def _read(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def offset_for_leader_epoch(bootstrap, topic, partition, epoch):
    """OffsetForLeaderEpoch v2 for one partition, asked of the broker at `bootstrap`
    (host:port): returns (error code, leader epoch, end offset)."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    body = struct.pack(">i", 1) + _string(topic) + struct.pack(">iiii", 1, partition, -1, epoch)
    response = _request(host, int(port), OFFSET_FOR_LEADER_EPOCH, 2, body)
    at = 4  # throttle time
    topics = struct.unpack(">i", response[at:at + 4])[0]
    assert topics == 1, f"{topics} topics in the answer"
    at += 4
    name_len = struct.unpack(">h", response[at:at + 2])[0]
    at += 2 + name_len
    partitions = struct.unpack(">i", response[at:at + 4])[0]
    assert partitions == 1, f"{partitions} partitions in the answer"
    at += 4
    error, got_partition, leader_epoch, end_offset = struct.unpack(">hiiq", response[at:at + 18])
    assert got_partition == partition
    return error, leader_epoch, end_offset
