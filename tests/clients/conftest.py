"""Fixtures for the client compatibility tests: a real `silt serve` per test, real clients.

Every broker binds 127.0.0.1 on a port the OS picks, keeps its data in the test's temporary
directory, and is stopped by the test that started it (by PID), so nothing is left behind.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from store_proxy import StoreProxy

REPO = Path(__file__).resolve().parents[2]
SILT_BIN = Path(os.environ.get("SILT_TEST_BIN", REPO / "target" / "debug" / "silt"))
NODE_DIR = Path(__file__).resolve().parent
READY = re.compile(r"silt is serving.*kafka=(\S+):(\d+) admin=(\S+):(\d+) rpc=(\S+):(\d+)")


class Silt:
    """One `silt serve` process and its data directory."""

    def __init__(self, data_dir: Path, log_path: Path, extra_args=(), env=None):
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.kafka_port = 0
        self.admin_port = 0
        self.rpc_port = 0
        self.process = None
        self.lines = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout=60, wait=True):
        """Starts the broker and waits for its 'serving' line (the ports are read from it).
        With wait=False it returns at once: a node of a cluster serves only once a majority
        of the controller is up, so a cluster's nodes start together (see `wait_ready`)."""
        args = [
            str(SILT_BIN), "serve",
            "--data-dir", str(self.data_dir),
            "--kafka-addr", f"127.0.0.1:{self.kafka_port}",
            "--admin-addr", f"127.0.0.1:{self.admin_port}",
            "--rpc-addr", f"127.0.0.1:{self.rpc_port}",
            *self.extra_args,
        ]
        env = {**os.environ, "RUST_LOG": os.environ.get("SILT_TEST_LOG", "info,openraft=error"), **self.env}
        env = {k: v for k, v in env.items() if not k.startswith("SILT_") or k in self.env}
        # A cluster made again on fresh ports starts its nodes under a new directory.
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.PIPE, env=env, text=True)
        self._ready = threading.Event()
        ready = self._ready

        def pump(stream=self.process.stderr):
            for line in stream:
                log.write(line)
                log.flush()
                self.lines.append(line)
                match = READY.search(line)
                if match:
                    self.kafka_port = int(match.group(2))
                    self.admin_port = int(match.group(4))
                    self.rpc_port = int(match.group(6))
                    ready.set()
            log.close()

        threading.Thread(target=pump, daemon=True).start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=60):
        """Waits for the 'serving' line of the last start."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.process.poll() is not None:
                raise RuntimeError(f"silt exited with {self.process.returncode}:\n{''.join(self.lines[-20:])}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"silt did not start in {timeout}s:\n{''.join(self.lines[-20:])}")
        return self

    def stop(self, timeout=60) -> int:
        """SIGTERM and wait: returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self):
        """SIGKILL: no flush, no clean-shutdown marker."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pause(self):
        """SIGSTOP: the process stops, its sockets stay open (a hung node)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self):
        """SIGCONT after `pause`."""
        self.process.send_signal(signal.SIGCONT)

    def restart(self, hard=False):
        """Stops (SIGTERM, or SIGKILL when hard) and starts again on the same ports."""
        if hard:
            self.kill()
        else:
            assert self.stop() == 0, "clean shutdown"
        return self.start()

    def log_text(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def silt_factory(tmp_path):
    started = []

    def make(name="silt", extra_args=(), env=None):
        broker = Silt(tmp_path / name, tmp_path / f"{name}.log", extra_args, env)
        started.append(broker)
        return broker.start()

    yield make
    for broker in started:
        code = broker.stop()
        assert code == 0, f"silt exited with {code} at shutdown:\n{broker.log_text()[-4000:]}"
        assert "panicked" not in broker.log_text(), broker.log_text()[-4000:]


@pytest.fixture
def cluster_factory(tmp_path):
    """Starts clusters of real nodes (see cluster.py); stops them after the test, checking
    that every node still running stops cleanly and none panicked."""
    from cluster import Cluster

    made = []

    def make(n=3, extra_args=(), name="node", env=None):
        # The nodes' RPC ports are picked before the nodes start (each is named in the
        # others' seeds), so another process may take one in between (an outgoing
        # connection's ephemeral port): then the cluster is made again on fresh ports.
        for attempt in range(3):
            cluster = Cluster(tmp_path / f"{name}-try{attempt}" if attempt else tmp_path, n, extra_args, name, env)
            try:
                return cluster.start()
            except RuntimeError as e:
                cluster.stop_quietly()
                if "Address already in use" not in str(e) or attempt == 2:
                    raise
            finally:
                made.append(cluster)

    yield make
    for cluster in made:
        running = [n.process is not None and n.process.poll() is None for n in cluster.nodes]
        codes = cluster.stop()
        for node, was_running, code in zip(cluster.nodes, running, codes):
            assert not was_running or code == 0, f"node exited with {code}:\n{node.log_text()[-4000:]}"
            assert "panicked" not in node.log_text(), node.log_text()[-4000:]


@pytest.fixture
def silt(silt_factory):
    """A fresh broker for the test."""
    return silt_factory()


def run_node(script: str, args: dict, timeout=120) -> dict:
    """Runs tests/clients/js/<script> with JSON args; returns its JSON output."""
    result = subprocess.run(
        ["node", str(NODE_DIR / "js" / script)],
        input=json.dumps(args), capture_output=True, text=True, timeout=timeout, cwd=NODE_DIR,
    )
    if result.returncode != 0:
        raise AssertionError(f"node {script} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout)


def wait_for(condition, timeout=30, interval=0.05, what="condition"):
    """Polls `condition` until it returns a truthy value, which it returns."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3:
    """moto's S3 server (in memory) behind a StoreProxy (latency and faults), with one bucket."""

    def __init__(self, log_path: Path):
        import boto3

        self.server_port = free_port()
        self.log = open(log_path, "w")
        moto = REPO / ".venv" / "bin" / "moto_server"
        self.process = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(self.server_port)], stdout=self.log, stderr=self.log)
        self.proxy = StoreProxy(self.server_port).start()
        self.bucket = "silt-archive"
        self.client = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{self.server_port}", aws_access_key_id="test",
            aws_secret_access_key="test", region_name="us-east-1",
        )

        def ready():
            try:
                self.client.list_buckets()
                return True
            except Exception:
                if self.process.poll() is not None:
                    raise RuntimeError("moto_server exited")
                return False

        wait_for(ready, timeout=60, what="moto_server up")
        self.client.create_bucket(Bucket=self.bucket)

    @property
    def env(self):
        """What silt needs to reach the bucket (through the proxy)."""
        return {
            "AWS_ENDPOINT": f"http://127.0.0.1:{self.proxy.port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
        }

    def url(self, prefix="cluster-a"):
        return f"s3://{self.bucket}/{prefix}"

    def keys(self, prefix=""):
        keys = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def stop(self):
        self.proxy.stop()
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture
def s3(tmp_path):
    server = S3(tmp_path / "moto.log")
    yield server
    server.stop()


def silt_cli(*args, env=None, timeout=120, input=None):
    """Runs the silt binary's CLI; returns the CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SILT_")}
    full_env.update(env or {})
    # Values may be binary: undecodable bytes are replaced rather than failing the test.
    return subprocess.run(
        [str(SILT_BIN), *args], capture_output=True, text=True, errors="replace", timeout=timeout, env=full_env,
        input=input,
    )


def admin_json(silt, path):
    import urllib.request

    with urllib.request.urlopen(f"{silt.admin}{path}", timeout=10) as response:
        return json.loads(response.read())


def metric(silt, name, labels=None):
    """The value of one Prometheus sample on /metrics (None if absent)."""
    import urllib.request

    with urllib.request.urlopen(f"{silt.admin}/metrics", timeout=10) as response:
        text = response.read().decode()
    wanted = name if labels is None else name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return None
