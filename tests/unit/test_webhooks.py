"""Webhook URLs a tenant may give, and the Standard Webhooks signatures a receiver checks."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpcore
import pytest

from orchestrator.errors import ConfigError
from orchestrator.schema import Job
from orchestrator.webhooks import (
    CheckedBackend,
    Due,
    check_url,
    embedded_ipv4,
    getaddrinfo,
    payload,
    send,
    sign,
    verify,
)

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
BODY = b'{"type":"job.done","data":{"id":"abc"}}'

INTERNAL = [
    "http://127.0.0.1:8080/hook",
    "http://127.1/hook",  # shorthand for 127.0.0.1
    "http://2130706433/hook",  # 127.0.0.1 as one decimal number
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://172.16.5.4/hook",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://0.0.0.0/hook",
    "http://[::1]:9000/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "http://[fd00::1]/hook",
    "http://[fe80::1]/hook",
    "http://localhost/hook",
    "https://localhost:8443/hook",
    # IPv6 forms that carry an internal IPv4 address, though Python calls them global
    "http://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
    "http://[64:ff9b::10.0.0.1]/hook",  # NAT64 of 10.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of the cloud metadata address
    "http://[64:ff9b:1::7f00:1]/hook",  # a local-use NAT64 prefix
    "http://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
    "http://[2002:c0a8:a::1]/hook",  # 6to4 of 192.168.0.10
    "http://[::127.0.0.1]/hook",  # IPv4-compatible
    "http://[::a00:1]/hook",  # IPv4-compatible 10.0.0.1, in hex
    "http://[::ffff:7f00:1]/hook",  # IPv4-mapped loopback, in hex
    "http://[::ffff:10.0.0.1]/hook",
    "http://[::ffff:169.254.169.254]/hook",
    "http://[::ffff:0:127.0.0.1]/hook",  # IPv4-translated (SIIT)
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook",  # Teredo, its client 127.0.0.1
    "http://[fec0::1]/hook",  # site-local
]


@pytest.mark.parametrize("url", INTERNAL)
def test_internal_hosts_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="FRAMEQ_WEBHOOK_ALLOW_PRIVATE"):
        check_url(url, allow_private=False)


@pytest.mark.parametrize("url", INTERNAL)
def test_internal_hosts_are_taken_when_allowed(url: str) -> None:
    assert check_url(url, allow_private=True) == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.216.34/hook",
        "file:///etc/passwd",
        "gopher://93.184.216.34/",
        "javascript:alert(1)",
        "93.184.216.34/hook",  # no scheme
        "http:///hook",  # no host
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_only_http_urls_with_a_host(url: str, allow_private: bool) -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        check_url(url, allow_private)


@pytest.mark.parametrize("url", ["https://user:pw@93.184.216.34/hook", "http://user@127.0.0.1/hook"])
@pytest.mark.parametrize("allow_private", [False, True])
def test_credentials_are_refused(url: str, allow_private: bool) -> None:
    with pytest.raises(ConfigError, match="credentials"):
        check_url(url, allow_private)


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/hook",  # an unclosed IPv6 host
        "http://93.184.216.34:99999/hook",
        "http://93.184.216.34:port/hook",
        "http://exa mple.com/hook",
        "http://93.184.216.34/ho\nok",
        "http://93.184.216.34/hook\x00",
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_malformed_urls_are_refused(url: str, allow_private: bool) -> None:
    with pytest.raises(ConfigError, match=r"malformed|spaces or control"):
        check_url(url, allow_private)


def test_a_public_address_is_taken() -> None:
    # Literal addresses: resolving them needs no DNS server.
    assert (
        check_url("https://93.184.216.34/hooks/frameq?x=1", False) == "https://93.184.216.34/hooks/frameq?x=1"
    )
    assert check_url("http://[2606:4700::1111]:8080/h", False) == "http://[2606:4700::1111]:8080/h"


@pytest.mark.parametrize(
    ("address", "carried"),
    [
        ("64:ff9b::7f00:1", "127.0.0.1"),
        ("64:ff9b::5db8:d822", "93.184.216.34"),
        ("2002:7f00:1::1", "127.0.0.1"),
        ("2002:5db8:d822:1::1", "93.184.216.34"),
        ("::127.0.0.1", "127.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("::ffff:0:a9fe:a9fe", "169.254.169.254"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"),
        ("2606:4700::1111", None),
        ("fd00::1", None),
    ],
)
def test_the_ipv4_address_an_ipv6_one_carries(address: str, carried: str | None) -> None:
    found = embedded_ipv4(ipaddress.IPv6Address(address))
    assert (str(found) if found is not None else None) == carried


@pytest.mark.parametrize(
    "url",
    [
        "http://[64:ff9b::5db8:d822]/hook",  # NAT64 of a public address
        "http://[2002:5db8:d822::1]/hook",  # 6to4 of a public address
        "http://[::ffff:93.184.216.34]/hook",  # IPv4-mapped public address
    ],
)
def test_ipv6_forms_of_a_public_ipv4_address_are_taken(url: str) -> None:
    assert check_url(url, allow_private=False) == url


def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(ConfigError, match="does not resolve"):
        check_url("https://no-such-host.invalid/hook", False)


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's local time 10 hours off UTC (a server set to its own time zone)."""
    monkeypatch.setenv("TZ", "Pacific/Honolulu")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_event_times_are_utc() -> None:
    assert abs(datetime.now() - datetime.now(UTC).replace(tzinfo=None)) > timedelta(hours=9)
    job = Job(id="j1", state="cancelled", recipe="cartoon", input_name="in.png", frames_total=0)
    event = payload(job, "job.cancelled")  # not finished_at yet: now
    stamp = datetime.fromisoformat(event["timestamp"].removesuffix("Z")).replace(tzinfo=UTC)
    assert event["timestamp"].endswith("Z") and abs(stamp - datetime.now(UTC)) < timedelta(seconds=5)
    job.finished_at = datetime(2025, 3, 1, 12, 30)  # naive UTC, as stored
    event = payload(job, "job.done")
    assert event["timestamp"] == event["data"]["finished_at"] == "2025-03-01T12:30:00Z"


def headers_for(message_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The signature as the Standard Webhooks specification defines it, written out here."""
    key = base64.b64decode(secret[len("whsec_") :])
    mac = hmac.new(key, message_id.encode() + b"." + str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def test_sign_follows_the_specification() -> None:
    now = int(time.time())
    assert sign(SECRET, "msg_1", now, BODY) == standard_signature(SECRET, "msg_1", now, BODY)


def test_specification_example() -> None:
    # The example of the Standard Webhooks specification (its reference libraries' tests).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


def test_verify_takes_a_fresh_signature_of_ours() -> None:
    now = int(time.time())
    assert verify(SECRET, headers_for("msg_1", now, sign(SECRET, "msg_1", now, BODY)), BODY)


def test_verify_takes_one_valid_signature_among_several() -> None:
    # During a secret rotation a sender may put several signatures, space-separated.
    now = int(time.time())
    other = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    both = f"{sign(other, 'msg_1', now, BODY)} {sign(SECRET, 'msg_1', now, BODY)}"
    assert verify(SECRET, headers_for("msg_1", now, both), BODY)


def test_verify_rejects_a_tampered_body() -> None:
    now = int(time.time())
    headers = headers_for("msg_1", now, sign(SECRET, "msg_1", now, BODY))
    assert not verify(SECRET, headers, BODY.replace(b"abc", b"abd"))
    assert not verify(SECRET, headers, BODY + b" ")


def test_verify_rejects_another_message_id() -> None:
    now = int(time.time())
    assert not verify(SECRET, headers_for("msg_2", now, sign(SECRET, "msg_1", now, BODY)), BODY)


def test_verify_rejects_a_wrong_secret() -> None:
    now = int(time.time())
    other = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    assert not verify(other, headers_for("msg_1", now, sign(SECRET, "msg_1", now, BODY)), BODY)


@pytest.mark.parametrize("age_s", [301, 3600, -301])
def test_verify_rejects_a_timestamp_out_of_tolerance(age_s: int) -> None:
    # Correctly signed, but old (a replay) or from the future.
    then = int(time.time()) - age_s
    assert not verify(SECRET, headers_for("msg_1", then, sign(SECRET, "msg_1", then, BODY)), BODY)


def test_verify_takes_a_timestamp_within_tolerance() -> None:
    then = int(time.time()) - 200
    assert verify(SECRET, headers_for("msg_1", then, sign(SECRET, "msg_1", then, BODY)), BODY)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_rejects_missing_headers(missing: str) -> None:
    now = int(time.time())
    headers = headers_for("msg_1", now, sign(SECRET, "msg_1", now, BODY))
    del headers[missing]
    assert not verify(SECRET, headers, BODY)


def test_verify_rejects_a_malformed_timestamp_or_signature() -> None:
    now = int(time.time())
    good = sign(SECRET, "msg_1", now, BODY)
    assert not verify(SECRET, {**headers_for("msg_1", now, good), "webhook-timestamp": "soon"}, BODY)
    assert not verify(SECRET, headers_for("msg_1", now, good.removeprefix("v1,")), BODY)
    assert not verify(SECRET, headers_for("msg_1", now, "v1a," + good[3:]), BODY)


def test_verify_reads_header_names_in_any_case() -> None:
    # HTTP header names are case-insensitive; a receiver may hand them over as they arrived.
    now = int(time.time())
    headers = {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": str(now),
        "Webhook-Signature": sign(SECRET, "msg_1", now, BODY),
    }
    assert verify(SECRET, headers, BODY)


# -- sending to receivers that misbehave, over real sockets on 127.0.0.1 ----------------------


class Misbehaving:
    """A TCP server that reads a request, then answers as `answer` does, on every connection."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.requests: list[bytes] = []
        self.answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            self.requests.append(read_request(conn))
            with contextlib.suppress(OSError):  # the sender gave up and closed
                self.answer(conn)

    def close(self) -> None:
        self.sock.close()


def drip(conn: socket.socket) -> None:
    """A status line and a header that never ends, a byte every 0.1 s: each read gets something,
    so no timeout between reads fires."""
    for byte in b"HTTP/1.1 200 OK\r\nx-slow: " + b"a" * 600:
        conn.sendall(bytes([byte]))
        time.sleep(0.1)


def endless_body(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    for _ in range(20000):  # 1.3 GB, if someone reads it
        conn.sendall(chunk)


def due(url: str) -> Due:
    return Due(1, "msg_1", url, BODY, SECRET, 0)


@pytest.fixture
def dripping() -> Iterator[Misbehaving]:
    server = Misbehaving(drip)
    yield server
    server.close()


def test_a_receiver_that_drips_its_answer_is_given_up_on_in_time(dripping: Misbehaving) -> None:
    started = time.monotonic()
    status, error = send(due(dripping.url), allow_private=True, timeout_s=1.0)
    assert time.monotonic() - started < 3
    assert status is None and error is not None and "timed out" in error
    assert dripping.requests and b"webhook-signature" in dripping.requests[0]


def test_an_answer_body_is_not_read() -> None:
    server = Misbehaving(endless_body)
    try:
        started = time.monotonic()
        assert send(due(server.url), allow_private=True, timeout_s=5.0) == (200, None)
        assert time.monotonic() - started < 3
    finally:
        server.close()


def test_the_address_is_checked_when_connecting() -> None:
    # What a host resolves to may change between check_url and the connection (DNS
    # rebinding): the connection itself goes only to addresses the rules allow.
    backend = CheckedBackend(allow_private=False, deadline=time.monotonic() + 5)
    for host in ("127.0.0.1", "localhost", "::1", "10.0.0.1", "169.254.169.254", "64:ff9b::7f00:1"):
        with pytest.raises(httpcore.ConnectError, match="FRAMEQ_WEBHOOK_ALLOW_PRIVATE"):
            backend.connect_tcp(host, 80)


def answer_204(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")


def test_an_attempt_resolves_its_host_once_and_connects_where_that_said() -> None:
    # Two receivers on one port: 127.0.0.1 (what the host resolves to first) and 127.0.0.2
    # (what it would resolve to if asked again, as a rebinding DNS server answers).
    first = Misbehaving(answer_204)
    port = first.sock.getsockname()[1]
    second = socket.create_server(("127.0.0.2", port))
    second.settimeout(0.1)
    asked: list[tuple[str, int]] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["127.0.0.1"] if len(asked) == 1 else ["127.0.0.2"]

    try:
        url = f"http://hooks.example.com:{port}/hook"
        assert send(due(url), allow_private=True, timeout_s=5, lookup=rebinding) == (204, None)
        assert asked == [("hooks.example.com", port)]
        assert len(first.requests) == 1 and b"webhook-signature" in first.requests[0]
        with pytest.raises(TimeoutError):
            second.accept()
        # The next attempt asks again, once, and goes where that answer said
        again = send(due(url), allow_private=True, timeout_s=1, lookup=rebinding)
        assert again == (None, "timed out after 1 s")
        assert len(asked) == 2
        second.accept()[0].close()  # its connection waited there (nobody answers on 127.0.0.2)
    finally:
        first.close()
        second.close()


def test_a_host_refused_at_resolution_is_never_connected_to() -> None:
    receiver = Misbehaving(answer_204)
    asked: list[str] = []

    def loopback(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["93.184.216.34", "::ffff:127.0.0.1"]  # one internal address refuses the host

    try:
        url = f"http://hooks.example.com:{receiver.sock.getsockname()[1]}/hook"
        status, error = send(due(url), allow_private=False, timeout_s=5, lookup=loopback)
        assert status is None and error is not None and "FRAMEQ_WEBHOOK_ALLOW_PRIVATE" in error
        assert asked == ["hooks.example.com"] and receiver.requests == []
    finally:
        receiver.close()


def test_a_resolver_that_does_not_answer_ends_the_attempt_by_its_timeout() -> None:
    answer = threading.Event()

    def stuck(host: str, port: int) -> list[str]:
        answer.wait(30)
        return getaddrinfo("127.0.0.1", port)

    try:
        started = time.monotonic()
        status, error = send(due("http://slow-dns.example.com/hook"), True, timeout_s=1.0, lookup=stuck)
        assert time.monotonic() - started < 2
        assert status is None and error == "timed out after 1 s"
        # and so does checking a URL when a job is submitted
        started = time.monotonic()
        with pytest.raises(ConfigError, match="does not resolve within 1 s"):
            check_url("https://slow-dns.example.com/hook", False, timeout_s=1.0, lookup=stuck)
        assert time.monotonic() - started < 2
    finally:
        answer.set()


def test_a_receiver_that_refuses_connections_is_an_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    status, error = send(due(f"http://127.0.0.1:{port}/hook"), allow_private=True, timeout_s=2.0)
    assert status is None and error is not None and "ConnectError" in error


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A certificate for `name` that is its own authority, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def read_request(conn: socket.socket) -> bytes:
    """A whole request: its head and the body its content-length announces. Closing the
    connection with part of the body unread would reset it, and the client could lose the
    answer."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
        data += chunk
    head = data.partition(b"\r\n\r\n")[0].lower()
    length = next((int(line[15:]) for line in head.split(b"\r\n") if line.startswith(b"content-length:")), 0)
    while len(data.partition(b"\r\n\r\n")[2]) < length and (chunk := conn.recv(65536)):
        data += chunk
    return data


class TlsReceiver:
    """An https receiver on 127.0.0.1 answering 204, with the certificate it is given."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), self.context.wrap_socket(conn, server_side=True) as tls:
                self.requests.append(read_request(tls))
                tls.sendall(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


def test_https_is_verified_against_the_urls_host(tmp_path: Path) -> None:
    # The connection goes to the address checked (127.0.0.1); the certificate is checked
    # against the name in the URL.
    cert, key = self_signed(tmp_path, "localhost")
    receiver = TlsReceiver(cert, key)
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        url = f"https://localhost:{receiver.port}/hook"
        assert send(due(url), allow_private=True, timeout_s=5, tls=trusting) == (204, None)
        assert receiver.requests and b"webhook-signature" in receiver.requests[0]
        # A certificate no authority vouches for is refused
        status, error = send(due(url), allow_private=True, timeout_s=5)
        assert status is None and error is not None and "CERTIFICATE_VERIFY_FAILED" in error
        # and so is one for another name, even from a trusted authority
        other = f"https://127.0.0.1:{receiver.port}/hook"
        status, error = send(due(other), allow_private=True, timeout_s=5, tls=trusting)
        assert status is None and error is not None and "CERTIFICATE_VERIFY_FAILED" in error
        assert len(receiver.requests) == 1
    finally:
        receiver.close()
