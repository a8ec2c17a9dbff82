"""A latency and fault proxy between silt and an S3-compatible server: what a real object store
looks like from a broker (first-byte delay, a bandwidth cap per connection, jitter), and what
goes wrong with one (error storms, stalls, bodies cut short, the store gone altogether).

The kernel here has no netem, so this is userspace: a thread per direction of each connection.
It understands just enough HTTP/1.1 to tell requests apart on a kept-alive connection: a
request starts when the client sends after the previous response began (object_store's client
never pipelines), and its first line names the method and path that faults match on.

Used by the tests (through conftest's S3 fixture) and by bench/historical.py, which runs it as
a process of its own:

    python tests/clients/store_proxy.py --target-port 9000 --port 9001 --first-byte-ms 30 \\
        --bytes-per-sec 50000000
"""

import argparse
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass


@dataclass
class Fault:
    """What to do to requests matching `method` and `path_contains`: `fail` answers `status`
    without asking the store, `stall` holds the response `seconds` longer, `cut` closes the
    connection after `after_bytes` of the response. At most `count` requests (None: any
    number) until `until` (monotonic seconds; None: no end)."""

    kind: str
    method: str = "GET"
    path_contains: str = ""
    count: int | None = 1
    until: float | None = None
    status: int = 503
    seconds: float = 0.0
    after_bytes: int = 0

    def matches(self, method, path, now):
        return (
            method == self.method
            and self.path_contains in path
            and (self.count is None or self.count > 0)
            and (self.until is None or now < self.until)
        )


class _Exchange:
    """One kept-alive connection's state, shared by its two pump threads."""

    def __init__(self):
        self.responding = True  # so the client's first bytes start a request
        self.request_at = 0.0
        self.fault = None
        self.lock = threading.Lock()


class StoreProxy:
    def __init__(self, target_port, port=None, first_byte_ms=0.0, jitter_ms=0.0, bytes_per_sec=0):
        self.target_port = target_port
        self.port = port or _free_port()
        self.first_byte_ms = first_byte_ms
        self.jitter_ms = jitter_ms
        self.bytes_per_sec = bytes_per_sec
        self.requests = Counter()  # by method
        self.paths = Counter()  # by (method, path without its query)
        self.faults_applied = Counter()  # by kind
        self._faults = []
        self._lock = threading.Lock()
        self._listener = None
        self._conns = []
        self._rng = random.Random(11)

    # -- faults -------------------------------------------------------------------------------

    def fail(self, count=1, status=503, seconds=None, method="GET", path_contains=""):
        """The next `count` matching requests (or all of them for `seconds`) are answered
        `status` at once."""
        self._add(Fault("fail", method, path_contains, count, _until(seconds), status=status))

    def stall(self, seconds, count=1, method="GET", path_contains=""):
        self._add(Fault("stall", method, path_contains, count, seconds=seconds))

    def cut(self, after_bytes, count=1, method="GET", path_contains=""):
        self._add(Fault("cut", method, path_contains, count, after_bytes=after_bytes))

    def clear(self):
        with self._lock:
            self._faults.clear()

    def request_count(self, method=None):
        with self._lock:
            return sum(self.requests.values()) if method is None else self.requests[method]

    def count(self, method, suffix=""):
        """Requests of `method` whose path (query left out) ends with `suffix`."""
        with self._lock:
            return sum(n for (m, path), n in self.paths.items() if m == method and path.endswith(suffix))

    def reset_counts(self):
        with self._lock:
            self.requests.clear()
            self.paths.clear()

    def _add(self, fault):
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, method, path):
        now = time.monotonic()
        with self._lock:
            self.requests[method] += 1
            self.paths[(method, path.split("?", 1)[0])] += 1
            for fault in self._faults:
                if fault.matches(method, path, now):
                    if fault.count is not None:
                        fault.count -= 1
                    self.faults_applied[fault.kind] += 1
                    return fault
        return None

    # -- the store coming and going ------------------------------------------------------------

    def start(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self):
        """The store goes away: the listener closes and every open connection is cut."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            _close(c)

    # -- pumps ---------------------------------------------------------------------------------

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns += [client, upstream]
            exchange = _Exchange()
            threading.Thread(target=self._requests, args=(client, upstream, exchange), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client, exchange), daemon=True).start()

    def _requests(self, client, upstream, exchange):
        try:
            while True:
                data = client.recv(262144)
                if not data:
                    break
                with exchange.lock:
                    starts = exchange.responding
                    if starts:
                        exchange.responding = False
                        exchange.request_at = time.monotonic()
                if starts:
                    method, _, rest = data.partition(b" ")
                    path = rest.split(b" ", 1)[0].decode("latin-1")
                    fault = self._take_fault(method.decode("latin-1"), path)
                    exchange.fault = fault
                    if fault is not None and fault.kind == "fail":
                        body = f"<Error><Code>SlowDown</Code><Message>injected {fault.status}</Message></Error>".encode()
                        client.sendall(
                            f"HTTP/1.1 {fault.status} Injected\r\nContent-Type: application/xml\r\n"
                            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
                        )
                        break
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)

    def _responses(self, upstream, client, exchange):
        sent = 0
        began = 0.0
        try:
            while True:
                data = upstream.recv(262144)
                if not data:
                    break
                with exchange.lock:
                    first = not exchange.responding
                    if first:
                        exchange.responding = True
                fault = exchange.fault
                if first:
                    delay = self.first_byte_ms / 1000.0
                    if self.jitter_ms:
                        delay += self._rng.uniform(0, self.jitter_ms) / 1000.0
                    if fault is not None and fault.kind == "stall":
                        delay += fault.seconds
                    wait = exchange.request_at + delay - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    sent, began = 0, time.monotonic()
                if fault is not None and fault.kind == "cut" and sent + len(data) >= fault.after_bytes:
                    client.sendall(data[: max(0, fault.after_bytes - sent)])
                    break
                client.sendall(data)
                sent += len(data)
                if self.bytes_per_sec:
                    ahead = began + sent / self.bytes_per_sec - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)


def _until(seconds):
    return None if seconds is None else time.monotonic() + seconds


def _close(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--first-byte-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--bytes-per-sec", type=float, default=0, help="per connection; 0: no cap")
    args = parser.parse_args()
    StoreProxy(args.target_port, args.port, args.first_byte_ms, args.jitter_ms, args.bytes_per_sec).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
