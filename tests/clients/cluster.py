"""A cluster of real `silt serve` processes for the replication tests, with a fault proxy in
front of each node's RPC listener.

Nodes reach each other only through the proxies (each node advertises its proxy's address),
and every connection starts with silt's hello, "SILTRPC1" and the dialer's node id, so a
proxy knows who is calling and can refuse or cut any pair of nodes: a network partition
without network namespaces or netem. Kafka clients talk to the nodes directly.
"""

import json
import socket
import subprocess
import threading
import urllib.request

from conftest import Silt, free_port, wait_for

HELLO_BYTES = 16


class RpcProxy:
    """Forwards connections to one node's RPC listener, except from peers cut off from it."""

    def __init__(self, node_id: int, target_port: int):
        self.node_id = node_id
        self.target_port = target_port
        self.port = free_port()
        self.blocked = set()  # dialer ids refused
        self._conns = []  # (dialer id, socket)
        self._lock = threading.Lock()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        hello = b""
        try:
            while len(hello) < HELLO_BYTES:
                chunk = client.recv(HELLO_BYTES - len(hello))
                if not chunk:
                    client.close()
                    return
                hello += chunk
        except OSError:
            client.close()
            return
        dialer = int.from_bytes(hello[8:16], "big")
        with self._lock:
            if dialer in self.blocked:
                client.close()
                return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            upstream.sendall(hello)
        except OSError:
            client.close()
            return
        with self._lock:
            self._conns += [(dialer, client), (dialer, upstream)]
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def block(self, dialers):
        """Refuses connections from `dialers` and cuts the ones open."""
        with self._lock:
            self.blocked |= set(dialers)
            cut = [s for d, s in self._conns if d in self.blocked]
            self._conns = [(d, s) for d, s in self._conns if d not in self.blocked]
        for s in cut:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def unblock_all(self):
        with self._lock:
            self.blocked = set()

    def close(self):
        self._listener.close()
        self.block(range(1000))


class Cluster:
    """`n` nodes (ids 0..n-1), all controller voters, topics RF=3 and min.insync=2 by
    default."""

    def __init__(self, tmp_path, n=3, extra_args=(), name="node", env=None):
        self.proxies = []
        self.nodes = []
        # Nodes stopped with SIGSTOP: their status is not asked for (it would hang).
        self.paused = set()
        rpc_ports = [free_port() for _ in range(n)]
        self.proxies = [RpcProxy(i, rpc_ports[i]) for i in range(n)]
        seeds = ",".join(f"{i}@127.0.0.1:{p.port}" for i, p in enumerate(self.proxies))
        for i in range(n):
            args = [
                "--node-id", str(i),
                "--seeds", seeds,
                "--advertised-rpc-addr", f"127.0.0.1:{self.proxies[i].port}",
                "--set", f"default_replication_factor={min(n, 3)}",
                "--set", f"default_min_insync_replicas={min(n, 2)}",
                *extra_args,
            ]
            node = Silt(tmp_path / f"{name}-{i}", tmp_path / f"{name}-{i}.log", args, env=env)
            node.rpc_port = rpc_ports[i]
            self.nodes.append(node)

    def start(self, timeout=90):
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_ready(timeout)
        return self

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def running(self):
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def status(self, node_id: int) -> dict:
        with urllib.request.urlopen(f"{self.nodes[node_id].admin}/v1/status", timeout=5) as r:
            return json.load(r)

    def replica_states(self, topic: str, partition: int):
        """Per running node: its replica of the partition as /v1/status shows it."""
        states = {}
        for i, node in enumerate(self.nodes):
            if node.process is None or node.process.poll() is not None or i in self.paused:
                continue
            try:
                status = self.status(i)
            except OSError:
                continue
            for t in status["topics"]:
                if t["name"] != topic:
                    continue
                for p in t["partitions"]:
                    if p["partition"] == partition and p.get("replica"):
                        states[i] = {**p["replica"], "high_watermark": p.get("high_watermark")}
        return states

    def leader(self, topic: str, partition: int, timeout=30) -> int:
        """The node leading the partition, once exactly one running node says it does."""

        def one():
            leaders = [i for i, s in self.replica_states(topic, partition).items() if s["role"] == "leader"]
            return leaders[0] + 1 if len(leaders) == 1 else None

        return wait_for(one, timeout=timeout, interval=0.1, what=f"one leader of {topic}/{partition}") - 1

    def wait_in_sync(self, topic: str, partitions, count=3, timeout=60):
        """Waits until each partition's leader counts `count` replicas in sync."""

        def synced():
            for p in partitions:
                states = self.replica_states(topic, p)
                lead = [s for s in states.values() if s["role"] == "leader"]
                if len(lead) != 1 or len(lead[0]["in_sync"]) < count:
                    return False
            return True

        wait_for(synced, timeout=timeout, interval=0.2, what=f"{topic} in sync on {count} replicas")

    def isolate(self, node_id: int):
        """Cuts node `node_id` off from every other node (both directions)."""
        others = [i for i in range(len(self.nodes)) if i != node_id]
        self.proxies[node_id].block(others)
        for i in others:
            self.proxies[i].block([node_id])

    def heal(self):
        for proxy in self.proxies:
            proxy.unblock_all()

    def stop_quietly(self):
        """Kills whatever of a cluster that failed to start is running."""
        for node in self.nodes:
            node.kill()
        for proxy in self.proxies:
            proxy.close()
        self.proxies = []

    def stop(self):
        """Stops every node (resuming paused ones first); returns their exit codes."""
        codes = []
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                try:
                    node.resume()
                except ProcessLookupError:
                    pass
        for node in self.nodes:
            try:
                codes.append(node.stop())
            except subprocess.TimeoutExpired:
                # Killed by `stop`; the others are still stopped, so nothing is left running.
                codes.append("did not stop within its timeout (killed)")
        for proxy in self.proxies:
            proxy.close()
        return codes

