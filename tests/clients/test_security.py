"""Security with real clients: TLS, mutual TLS, SASL (PLAIN, SCRAM-SHA-256/512), ACLs, the
admin API's authentication, and what a hostile client gets.

Each test makes its own CA and certificates (trustme); no key is committed. The broker has
four listeners: PLAINTEXT (principal ANONYMOUS, which no ACL names, so it may do nothing),
SASL_SSL, SSL (a client certificate's CN is the principal) and SASL_PLAINTEXT.
"""

import base64
import json
import re
import socket
import ssl
import struct
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import trustme
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import (
    AclBinding, AclOperation, AclPermissionType, AdminClient, NewTopic, ResourcePatternType,
    ResourceType, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion,
)

from conftest import SILT_BIN, run_node, wait_for
from helpers import kcat

ADMIN_PASSWORD = "admin-s3cret-pw"
ALICE_PASSWORD = "alice-pw-42"
TOKEN = "token-for-scripts-0123456789"


class Certs:
    """A CA, the broker's certificate (127.0.0.1) and client certificates, as PEM files."""

    def __init__(self, directory):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.ca_file = self.dir / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.server_cert = self.dir / "server.pem"
        self.server_key = self.dir / "server.key"
        self.issue_server()

    def issue_server(self):
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(self.server_key))
        cert.cert_chain_pems[0].write_to_path(str(self.server_cert))
        return cert

    def client(self, name):
        cert = self.ca.issue_cert(f"{name}@clients.example", common_name=name)
        cert_file, key_file = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        return cert_file, key_file


class Secured:
    """A started broker with its listeners' ports and client settings for each."""

    def __init__(self, broker, certs):
        self.broker = broker
        self.certs = certs
        line = next(l for l in reversed(broker.lines) if "silt is serving" in l)
        self.ports = {name: int(port) for name, port in re.findall(r"(\w+)://127\.0\.0\.1:(\d+)", line)}

    def addr(self, listener):
        return f"127.0.0.1:{self.ports[listener]}"

    def sasl_ssl(self, user, password, mechanism="SCRAM-SHA-512"):
        return {
            "bootstrap.servers": self.addr("SASL_SSL"),
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": mechanism,
            "sasl.username": user,
            "sasl.password": password,
            "ssl.ca.location": str(self.certs.ca_file),
        }

    def admin_conf(self):
        return self.sasl_ssl("admin", ADMIN_PASSWORD)

    def cli_env(self, user="admin", password=ADMIN_PASSWORD):
        return {
            "SILT_BROKERS": self.addr("SASL_SSL"),
            "SILT_CLI_SECURITY_PROTOCOL": "SASL_SSL",
            "SILT_CLI_SASL_USERNAME": user,
            "SILT_CLI_SASL_PASSWORD": password,
            "SILT_CLI_SSL_CA_LOCATION": str(self.certs.ca_file),
        }

    def silt(self, *args, user="admin", password=ADMIN_PASSWORD, check=True):
        import os
        env = {k: v for k, v in os.environ.items() if not k.startswith("SILT_")}
        env.update(self.cli_env(user, password))
        result = subprocess.run([str(SILT_BIN), *args], env=env, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"silt {args} failed: {result.stderr}")
        return result


@pytest.fixture
def secured(silt_factory, tmp_path):
    def start(name="silt", extra=(), env=None):
        certs = Certs(tmp_path / f"{name}-certs")
        args = [
            "--set", "listeners=PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0,SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
            "--set", f"tls_cert_file={certs.server_cert}",
            "--set", f"tls_key_file={certs.server_key}",
            "--set", f"tls_ca_file={certs.ca_file}",
            "--set", "tls_client_auth=requested",
            "--set", "ssl_principal_mapping_rules=RULE:^CN=([^,]+),.*$/$1/,DEFAULT",
            *extra,
        ]
        env = {"SILT_BOOTSTRAP_USER": f"admin:{ADMIN_PASSWORD}", **(env or {})}
        return Secured(silt_factory(name, args, env), certs)
    return start


def create_user(secured, name, password, mechanism=ScramMechanism.SCRAM_SHA_512):
    admin = AdminClient(secured.admin_conf())
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(name, ScramCredentialInfo(mechanism, 4096), password.encode())])
    for future in futures.values():
        future.result(30)


def create_topics(secured, *names):
    admin = AdminClient(secured.admin_conf())
    for future in admin.create_topics([NewTopic(n, 1) for n in names]).values():
        future.result(30)


def allow(secured, principal, resource_type, name, *operations, pattern=ResourcePatternType.LITERAL):
    admin = AdminClient(secured.admin_conf())
    bindings = [AclBinding(resource_type, name, pattern, principal, "*", op, AclPermissionType.ALLOW)
                for op in operations]
    for future in admin.create_acls(bindings).values():
        future.result(30)


def produce(conf, topic, values):
    """Produces `values`; returns the delivery error of each (None when delivered)."""
    results = {}
    producer = Producer({**conf, "acks": "all", "linger.ms": 5, "message.timeout.ms": 20000})
    for i, v in enumerate(values):
        producer.produce(topic, v, on_delivery=lambda err, msg, i=i: results.__setitem__(i, err))
    assert producer.flush(30) == 0
    return [results[i] for i in range(len(values))]


def consume(conf, topic, group, count, timeout=60):
    consumer = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got, errors = [], []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                errors.append(msg.error())
                if msg.error().fatal() or msg.error().code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED):
                    break
                continue
            got.append(msg.value())
    finally:
        consumer.close()
    return got, errors


def setup_alice(secured):
    """alice: WRITE and READ on `orders`, READ on groups starting `shop-`; nothing on `secret`."""
    create_topics(secured, "orders", "secret")
    create_user(secured, "alice", ALICE_PASSWORD)
    allow(secured, "User:alice", ResourceType.TOPIC, "orders", AclOperation.WRITE, AclOperation.READ)
    allow(secured, "User:alice", ResourceType.GROUP, "shop-", AclOperation.READ, pattern=ResourcePatternType.PREFIXED)


def test_sasl_ssl_scram_with_every_client_and_acls_as_kafka(secured):
    s = secured()
    setup_alice(s)
    alice = s.sasl_ssl("alice", ALICE_PASSWORD)

    # librdkafka: produce where allowed, TOPIC_AUTHORIZATION_FAILED where not.
    assert produce(alice, "orders", [b"o-%d" % i for i in range(5)]) == [None] * 5
    errors = produce(alice, "secret", [b"x"])
    assert errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors
    got, errors = consume(alice, "orders", "shop-1", 5)
    assert got == [b"o-%d" % i for i in range(5)], errors
    # A group alice may not read: GROUP_AUTHORIZATION_FAILED.
    got, errors = consume(alice, "orders", "other-group", 1, timeout=20)
    assert got == [] and any(e.code() == KafkaError.GROUP_AUTHORIZATION_FAILED for e in errors), errors
    # Metadata lists what alice may describe only.
    topics = Producer(alice).list_topics(timeout=20).topics
    assert "orders" in topics and "secret" not in topics

    # kafka-python: SCRAM-SHA-512 over TLS.
    from kafka import KafkaConsumer, TopicPartition as KTP
    from kafka.errors import KafkaError as PyKafkaError
    kp = dict(bootstrap_servers=s.addr("SASL_SSL"), security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
              sasl_plain_username="alice", sasl_plain_password=ALICE_PASSWORD, ssl_cafile=str(s.certs.ca_file),
              ssl_check_hostname=True)
    consumer = KafkaConsumer(**kp, enable_auto_commit=False)
    consumer.assign([KTP("orders", 0)])
    consumer.seek_to_beginning(KTP("orders", 0))
    values = []
    deadline = time.monotonic() + 60
    while len(values) < 5 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in records)
    consumer.close()
    assert values == [b"o-%d" % i for i in range(5)]
    with pytest.raises(PyKafkaError):
        KafkaConsumer(**{**kp, "sasl_plain_password": "wrong"}, request_timeout_ms=5000, api_version_auto_timeout_ms=5000)

    # kafkajs: SCRAM-SHA-512 over TLS, produce and consume in a group.
    js = {"brokers": [s.addr("SASL_SSL")], "ssl": {"ca": str(s.certs.ca_file)},
          "sasl": {"mechanism": "scram-sha-512", "username": "alice", "password": ALICE_PASSWORD}}
    out = run_node("produce.js", {**js, "topic": "orders", "messages": [
        {"key": None, "value": base64.b64encode(b"js-%d" % i).decode()} for i in range(3)]})
    assert out["count"] == 3
    out = run_node("consume.js", {**js, "topic": "orders", "groupId": "shop-js", "count": 8})
    assert [base64.b64decode(v) for v in out["values"]][-3:] == [b"js-0", b"js-1", b"js-2"]
    # kafkajs is refused a topic alice may not write.
    with pytest.raises(AssertionError, match="(?i)authoriz"):
        run_node("produce.js", {**js, "retries": 0, "topic": "secret", "messages": [{"key": None, "value": "eA=="}]})

    # kcat (librdkafka 2.0.2): SCRAM-SHA-256 needs a -256 credential; alice has -512 only.
    out = kcat(s.addr("SASL_SSL"), "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512",
               "-X", "sasl.username=alice", "-X", f"sasl.password={ALICE_PASSWORD}",
               "-X", f"ssl.ca.location={s.certs.ca_file}", "-C", "-t", "orders", "-o", "0", "-c", "5", "-e", "-q")
    assert out.split() == [b"o-%d" % i for i in range(5)]
    result = subprocess.run(["kcat", "-b", s.addr("SASL_SSL"), "-X", "security.protocol=SASL_SSL",
                             "-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username=alice",
                             "-X", f"sasl.password={ALICE_PASSWORD}", "-X", f"ssl.ca.location={s.certs.ca_file}",
                             "-L", "-m", "5"], capture_output=True, timeout=60)
    assert result.returncode != 0 and b"authentication" in result.stderr.lower(), result.stderr

    # kafka-python's producer gets TopicAuthorizationFailedError for the topic it may not write.
    from kafka import KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError
    producer = KafkaProducer(**kp, max_block_ms=10000)
    with pytest.raises(TopicAuthorizationFailedError):
        producer.send("secret", b"x").get(timeout=20)
    producer.send("orders", b"kp").get(timeout=20)
    producer.close()

    # DENY wins over ALLOW, as in Kafka: alice may still write orders but no longer read it.
    admin = AdminClient(s.admin_conf())
    deny = AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:alice", "*",
                      AclOperation.READ, AclPermissionType.DENY)
    for f in admin.create_acls([deny]).values():
        f.result(30)
    assert produce(alice, "orders", [b"still-writes"]) == [None]
    got, errors = consume(alice, "orders", "shop-2", 1, timeout=20)
    assert got == [] and any(e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in errors), errors

    # An unknown user and a wrong password are told so, and counted.
    errors = []
    p = Producer({**s.sasl_ssl("mallory", "x"), "error_cb": errors.append})
    wait_for(lambda: p.poll(0.2) >= 0 and any(e.code() == KafkaError._AUTHENTICATION for e in errors), timeout=20)
    assert any("invalid credentials" in e.str() for e in errors), errors
    metrics = urllib.request.urlopen(auth_request(s, "/metrics", basic=("admin", ADMIN_PASSWORD))).read().decode()
    assert int(re.search(r"silt_sasl_authentication_failures_total (\d+)", metrics).group(1)) >= 2
    assert int(re.search(r"silt_authorization_denials_total (\d+)", metrics).group(1)) >= 1


def test_plain_and_scram_256_over_sasl_plaintext_and_the_cli(secured):
    s = secured()
    setup_alice(s)
    # The CLI: users and ACLs as an operator manages them.
    out = s.silt("user", "create", "bob", "--password", "bob-pw-1").stdout
    assert "created" in out
    listed = s.silt("user", "list").stdout
    assert re.search(r"bob\s+SCRAM-SHA-256 \(4096 iterations\), SCRAM-SHA-512", listed), listed
    s.silt("acl", "create", "--principal", "bob", "--operation", "write", "--operation", "describe", "--topic", "bo", "--prefixed")
    acls = s.silt("acl", "list", "--principal", "bob").stdout
    assert "PREFIXED" in acls and "WRITE" in acls and "alice" not in acls, acls
    # bob over SASL_PLAINTEXT with PLAIN and with SCRAM-SHA-256 (the CLI made both credentials).
    for mechanism in ("PLAIN", "SCRAM-SHA-256"):
        bob = {"bootstrap.servers": s.addr("SASL_PLAINTEXT"), "security.protocol": "SASL_PLAINTEXT",
               "sasl.mechanisms": mechanism, "sasl.username": "bob", "sasl.password": "bob-pw-1"}
        create_topics(s, f"bo-{mechanism}")
        assert produce(bob, f"bo-{mechanism}", [b"b"]) == [None]
    # A user without rights sees no topics through the CLI; a wrong password is refused.
    assert "orders" not in s.silt("topic", "list", user="bob", password="bob-pw-1").stdout
    refused = s.silt("topic", "list", user="bob", password="nope", check=False)
    assert refused.returncode != 0 and "invalid credentials" in refused.stderr
    # Deleting: the ACL, then the user; bob is refused afterwards.
    assert "1 ACL(s) deleted" in s.silt("acl", "delete", "--principal", "bob", "--operation", "write", "--topic", "bo", "--prefixed").stdout
    s.silt("user", "delete", "bob")
    assert "bob" not in s.silt("user", "list").stdout
    errors = []
    p = Producer({"bootstrap.servers": s.addr("SASL_PLAINTEXT"), "security.protocol": "SASL_PLAINTEXT",
                  "sasl.mechanisms": "PLAIN", "sasl.username": "bob", "sasl.password": "bob-pw-1", "error_cb": errors.append})
    wait_for(lambda: p.poll(0.2) >= 0 and any(e.code() == KafkaError._AUTHENTICATION for e in errors), timeout=20)
    # The plaintext listener's ANONYMOUS principal has no ACL: it sees nothing and may not write.
    anon = {"bootstrap.servers": s.broker.bootstrap}
    assert produce(anon, "orders", [b"a"])[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_mutual_tls_principal_is_the_certificate_cn(secured):
    s = secured()
    create_topics(s, "orders")
    allow(s, "User:writer", ResourceType.TOPIC, "orders", AclOperation.WRITE, AclOperation.READ)
    cert, key = s.certs.client("writer")
    mtls = {"bootstrap.servers": s.addr("SSL"), "security.protocol": "SSL", "ssl.ca.location": str(s.certs.ca_file),
            "ssl.certificate.location": str(cert), "ssl.key.location": str(key)}
    assert produce(mtls, "orders", [b"m-0", b"m-1"]) == [None, None]
    # Without a certificate the same listener makes the client ANONYMOUS: refused by the ACLs.
    anonymous = {k: v for k, v in mtls.items() if not k.startswith("ssl.certificate") and not k.startswith("ssl.key")}
    assert produce(anonymous, "orders", [b"x"])[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # kafka-python and kcat with the certificate.
    from kafka import KafkaConsumer, TopicPartition as KTP
    consumer = KafkaConsumer(bootstrap_servers=s.addr("SSL"), security_protocol="SSL", ssl_cafile=str(s.certs.ca_file),
                             ssl_certfile=str(cert), ssl_keyfile=str(key), enable_auto_commit=False)
    consumer.assign([KTP("orders", 0)])
    consumer.seek_to_beginning(KTP("orders", 0))
    values = []
    deadline = time.monotonic() + 60
    while len(values) < 2 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in records)
    consumer.close()
    assert values == [b"m-0", b"m-1"]
    out = kcat(s.addr("SSL"), "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={s.certs.ca_file}",
               "-X", f"ssl.certificate.location={cert}", "-X", f"ssl.key.location={key}",
               "-C", "-t", "orders", "-o", "0", "-c", "2", "-e", "-q")
    assert out.split() == [b"m-0", b"m-1"]
    # kafkajs with the certificate.
    out = run_node("produce.js", {"brokers": [s.addr("SSL")], "topic": "orders",
                                  "ssl": {"ca": str(s.certs.ca_file), "cert": str(cert), "key": str(key)},
                                  "messages": [{"key": None, "value": base64.b64encode(b"m-js").decode()}]})
    assert out["offsets"] == [[0, "2"]]
    # A certificate from another CA does not get through the handshake.
    other = Certs(s.certs.dir / "other")
    stranger_cert, stranger_key = other.client("writer")
    context = ssl.create_default_context(cafile=str(s.certs.ca_file))
    context.load_cert_chain(str(stranger_cert), str(stranger_key))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with socket.create_connection(("127.0.0.1", s.ports["SSL"]), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(struct.pack(">ihhi", 10, 18, 0, 1) + struct.pack(">h", 0))
                if not tls.recv(4):
                    raise ConnectionError("closed")


def frame(api, version, body, correlation=1):
    header = struct.pack(">hhi", api, version, correlation) + struct.pack(">h", 5) + b"tests"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def read_frame(sock):
    size = sock.recv(4)
    if len(size) < 4:
        return None
    n = struct.unpack(">i", size)[0]
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def kstring(s):
    return struct.pack(">h", len(s)) + s


def test_hostile_clients_get_errors_timeouts_and_one_log_line(secured):
    s = secured(extra=["--set", "sasl_handshake_timeout_ms=1500", "--set", "auth_failure_delay_ms=20"])
    port = s.ports["SASL_PLAINTEXT"]

    def connect():
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        return sock

    # A request before authenticating: the connection is closed.
    with connect() as sock:
        sock.sendall(frame(3, 1, struct.pack(">i", 0)))
        assert read_frame(sock) is None
    # An unsupported mechanism: UNSUPPORTED_SASL_MECHANISM with the offered list, then closed.
    with connect() as sock:
        sock.sendall(frame(17, 1, kstring(b"GSSAPI")))
        answer = read_frame(sock)
        assert struct.unpack(">h", answer[4:6])[0] == 33
        assert b"SCRAM-SHA-512" in answer
        assert read_frame(sock) is None
    # SaslAuthenticate before SaslHandshake: ILLEGAL_SASL_STATE.
    with connect() as sock:
        sock.sendall(frame(36, 1, struct.pack(">i", 3) + b"abc"))
        answer = read_frame(sock)
        assert struct.unpack(">h", answer[4:6])[0] == 34
    # An oversized frame before authenticating: closed without reading it all.
    with connect() as sock:
        sock.sendall(struct.pack(">i", 50 * 1024 * 1024) + b"\0" * 1024)
        try:
            assert read_frame(sock) is None
        except ConnectionResetError:
            pass
    # A client that connects and says nothing: closed after sasl_handshake_timeout_ms.
    with connect() as sock:
        sock.settimeout(20)
        started = time.monotonic()
        assert sock.recv(16) == b""
        assert time.monotonic() - started < 15
    # 100 wrong passwords: each answered SASL_AUTHENTICATION_FAILED and closed, the later
    # ones after a longer wait (20 ms, one more step per 20 failures from the address).
    waits = []
    for i in range(100):
        with connect() as sock:
            sock.sendall(frame(17, 1, kstring(b"PLAIN")))
            assert struct.unpack(">h", read_frame(sock)[4:6])[0] == 0
            token = b"\0admin\0wrong-%d" % i
            started = time.monotonic()
            sock.sendall(frame(36, 1, struct.pack(">i", len(token)) + token))
            answer = read_frame(sock)
            waits.append(time.monotonic() - started)
            assert struct.unpack(">h", answer[4:6])[0] == 58
            assert read_frame(sock) is None
    assert waits[0] >= 0.02 and waits[-1] >= 0.1, (waits[0], waits[-1])
    # Logged in a handful of lines, not 200, and never with a password.
    log = s.broker.log_text()
    assert log.count("authentication failed") < 20, log.count("authentication failed")
    assert "wrong-1" not in log and ADMIN_PASSWORD not in log
    # The broker still serves the right password.
    with connect() as sock:
        sock.sendall(frame(17, 1, kstring(b"PLAIN")))
        read_frame(sock)
        token = b"\0admin\0" + ADMIN_PASSWORD.encode()
        sock.sendall(frame(36, 1, struct.pack(">i", len(token)) + token))
        assert struct.unpack(">h", read_frame(sock)[4:6])[0] == 0
    # Garbage and half handshakes on the TLS listener: refused, counted, and the listener
    # still serves a real client.
    import random
    rng = random.Random(14)
    for _ in range(30):
        with socket.create_connection(("127.0.0.1", s.ports["SSL"]), timeout=10) as sock:
            sock.sendall(bytes([0x16, 0x03, 0x01]) + rng.randbytes(rng.randrange(0, 600)))
            try:
                while sock.recv(4096):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
    context = ssl.create_default_context(cafile=str(s.certs.ca_file))
    with socket.create_connection(("127.0.0.1", s.ports["SSL"]), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(frame(18, 0, b""))
            assert read_frame(tls)[:4] == struct.pack(">i", 1)
    status = json.load(urllib.request.urlopen(auth_request(s, "/v1/status", basic=("admin", ADMIN_PASSWORD))))
    assert status["security"]["authentication_failures"] >= 100
    # A garbage record is refused at once; a header with too few bytes waits out the timer.
    sec = status["security"]
    assert sec["authentication_timeouts"] >= 1 and sec["tls_handshake_failures"] >= 5
    assert sec["tls_handshake_failures"] + sec["authentication_timeouts"] >= 31, sec


def auth_request(s, path, basic=None, token=None, method="GET"):
    request = urllib.request.Request(f"{s.broker.admin}{path}", method=method)
    if basic:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode())
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    return request


def test_admin_api_authenticates_and_only_super_users_change_state(secured, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    s = secured(extra=["--set", f"admin_api_token=${{file:{token_file}}}"])
    create_user(s, "alice", ALICE_PASSWORD)

    def status_of(request):
        try:
            return urllib.request.urlopen(request, timeout=30).status
        except urllib.error.HTTPError as e:
            return e.code

    assert status_of(auth_request(s, "/v1/status")) == 401
    assert status_of(auth_request(s, "/v1/status", basic=("admin", "wrong"))) == 401
    assert status_of(auth_request(s, "/v1/status", token="not-it")) == 401
    assert status_of(auth_request(s, "/v1/status", basic=("alice", ALICE_PASSWORD))) == 200
    assert status_of(auth_request(s, "/v1/status", token=TOKEN)) == 200
    # The console sits behind the same gate: a browser is asked for a user (Basic), and the
    # page, once in, acts as that user.
    try:
        urllib.request.urlopen(auth_request(s, "/console"), timeout=30)
        raise AssertionError("the console served without credentials")
    except urllib.error.HTTPError as e:
        assert e.code == 401 and e.headers["WWW-Authenticate"].startswith("Basic"), e.headers
    page = urllib.request.urlopen(auth_request(s, "/console", basic=("alice", ALICE_PASSWORD)), timeout=30)
    assert page.status == 200 and b"console.js" in page.read()
    # A change by a user who is not a super user: 403; by the token or the bootstrap user it
    # gets through authorization (the cluster of one then refuses the decommission itself).
    change = "/v1/brokers/0/decommission"
    assert status_of(auth_request(s, change, basic=("alice", ALICE_PASSWORD), method="POST")) == 403
    assert status_of(auth_request(s, change, token=TOKEN, method="POST")) not in (401, 403)
    assert status_of(auth_request(s, change, basic=("admin", ADMIN_PASSWORD), method="POST")) not in (401, 403)
    # Secrets never show: not in the status page, DescribeConfigs, the CLI or the log.
    body = urllib.request.urlopen(auth_request(s, "/v1/status", token=TOKEN)).read().decode()
    admin = AdminClient(s.admin_conf())
    from confluent_kafka.admin import ConfigResource
    resource = ConfigResource(ConfigResource.Type.BROKER, "0")
    configs = list(admin.describe_configs([resource]).values())[0].result(30)
    assert configs["bootstrap_user"].is_sensitive and configs["bootstrap_user"].value is None
    assert configs["listeners"].value.startswith("PLAINTEXT://")
    create_topics(s, "described", "hidden")
    # The REST API shows a user the topics it may describe, as Metadata would.
    allow(s, "User:alice", ResourceType.TOPIC, "described", AclOperation.DESCRIBE)
    cluster = json.load(urllib.request.urlopen(auth_request(s, "/v3/clusters", token=TOKEN)))["data"][0]["cluster_id"]
    listed = json.load(urllib.request.urlopen(auth_request(s, f"/v3/clusters/{cluster}/topics", basic=("alice", ALICE_PASSWORD))))
    assert [t["topic_name"] for t in listed["data"]] == ["described"]
    assert status_of(auth_request(s, f"/v3/clusters/{cluster}/topics/hidden", basic=("alice", ALICE_PASSWORD))) == 404
    everything = json.load(urllib.request.urlopen(auth_request(s, f"/v3/clusters/{cluster}/topics", token=TOKEN)))
    assert {"described", "hidden"} <= {t["topic_name"] for t in everything["data"]}
    shown = s.silt("topic", "describe", "described").stdout + body + s.broker.log_text()
    for secret in (ADMIN_PASSWORD, TOKEN, ALICE_PASSWORD):
        assert secret not in shown


def test_admin_api_over_tls(secured, tmp_path):
    s = secured(extra=["--set", "admin_tls=true", "--set", f"admin_api_token={TOKEN}"])
    url = f"https://127.0.0.1:{s.broker.admin_port}/v1/status"
    context = ssl.create_default_context(cafile=str(s.certs.ca_file))
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    status = json.load(urllib.request.urlopen(request, context=context, timeout=30))
    assert status["security"]["admin_authentication"] is True
    assert [l["protocol"] for l in status["security"]["listeners"]] == ["PLAINTEXT", "SASL_SSL", "SSL", "SASL_PLAINTEXT"]
    # Plain HTTP to the TLS port gets nothing useful.
    import http.client
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{s.broker.admin_port}/v1/status", timeout=10).read()


def test_reauthentication_and_certificate_reload(secured):
    s = secured(extra=["--set", "connections_max_reauth_ms=1500", "--set", "tls_reload_interval_ms=200"])
    setup_alice(s)
    alice = s.sasl_ssl("alice", ALICE_PASSWORD)
    producer = Producer({**alice, "acks": "all", "linger.ms": 1})
    delivered = []

    def status():
        return json.load(urllib.request.urlopen(auth_request(s, "/v1/status", basic=("admin", ADMIN_PASSWORD))))["security"]

    # librdkafka re-authenticates before the session lifetime ends (KIP-368) and keeps
    # producing on the same connection.
    i = 0
    deadline = time.monotonic() + 60
    while status()["reauthentications"] < 2:
        assert time.monotonic() < deadline, status()
        producer.produce("orders", b"r-%d" % i, on_delivery=lambda err, msg: delivered.append(err))
        producer.flush(10)
        i += 1
        time.sleep(0.2)
    assert delivered and all(e is None for e in delivered), delivered

    # A new certificate written over the old files is served to new connections.
    def served_serial():
        context = ssl.create_default_context(cafile=str(s.certs.ca_file))
        with socket.create_connection(("127.0.0.1", s.ports["SSL"]), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return tls.getpeercert()["serialNumber"]

    before = served_serial()
    s.certs.issue_server()
    wait_for(lambda: served_serial() != before, timeout=30, what="the new certificate")
    assert status()["tls"]["reloads"] >= 1
    # Clients keep working across it.
    assert produce(alice, "orders", [b"after-reload"]) == [None]


def test_users_and_acls_survive_a_restart(secured):
    s = secured()
    setup_alice(s)
    s.broker.restart()
    s = Secured(s.broker, s.certs)
    alice = s.sasl_ssl("alice", ALICE_PASSWORD)
    assert produce(alice, "orders", [b"after-restart"]) == [None]
    assert produce(alice, "secret", [b"x"])[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_users_acls_and_listeners_across_a_cluster(cluster_factory):
    """Users and ACLs are the controller's: made through one node, they hold on every node;
    each node advertises its own address for the listener a client came in on."""
    cluster = cluster_factory(3, extra_args=[
        "--set", "listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
    ], env={"SILT_BOOTSTRAP_USER": f"admin:{ADMIN_PASSWORD}"})

    def sasl_port(node):
        line = next(l for l in reversed(node.lines) if "silt is serving" in l)
        return int(re.search(r"SASL_PLAINTEXT://127\.0\.0\.1:(\d+)", line).group(1))

    ports = {i: sasl_port(node) for i, node in enumerate(cluster.nodes)}

    def on(i, user, password):
        return {"bootstrap.servers": f"127.0.0.1:{ports[i]}", "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": password}

    admin = AdminClient(on(0, "admin", ADMIN_PASSWORD))
    for f in admin.create_topics([NewTopic("orders", 3, replication_factor=3)]).values():
        f.result(60)
    for f in admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
            "alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), ALICE_PASSWORD.encode())]).values():
        f.result(30)
    bindings = [AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:alice", "*", op,
                           AclPermissionType.ALLOW) for op in (AclOperation.WRITE, AclOperation.READ)]
    for f in admin.create_acls(bindings).values():
        f.result(30)
    # alice logs in on the last node, which learnt of her from the controller's log.
    alice = on(2, "alice", ALICE_PASSWORD)
    metadata = wait_for(lambda: _metadata_or_none(alice), timeout=60, what="alice on node 2")
    assert sorted(b.port for b in metadata.brokers.values()) == sorted(ports.values())
    assert list(metadata.topics) == ["orders"]
    assert produce(alice, "orders", [b"c-%d" % i for i in range(6)]) == [None] * 6
    assert produce(alice, "orders", [b"c-%d" % i for i in range(6)]) == [None] * 6
    # The ACLs are checked on every node: node 1 refuses a topic alice has no ACL for.
    for f in admin.create_topics([NewTopic("closed", 1, replication_factor=3)]).values():
        f.result(60)
    assert produce(on(1, "alice", ALICE_PASSWORD), "closed", [b"x"])[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def _metadata_or_none(conf):
    try:
        return Producer(conf).list_topics(timeout=5)
    except Exception:
        return None
