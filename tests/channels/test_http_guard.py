"""The outbound HTTP guard: private, loopback and link-local targets are refused."""

from __future__ import annotations

import ipaddress
import socket
import ssl

import pytest
import trustme

from channels import http as outbound
from channels.base import AMBIGUOUS, PERMANENT, TRANSIENT
from channels.http import AddressPolicy, BlockedAddress, HttpClient, HttpError, checked_addresses
from tests.channels.raw_receivers import one_shot_receiver, tls_then_garbage
from tests.support.http import RecordingServer

STRICT = AddressPolicy()


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a00:1", "private"),
        ("2002:a00:1::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("feff:ffff::1", "site-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "not public"),
    ],
)
def test_non_public_addresses_are_refused_by_default(address, reason):
    assert STRICT.refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert STRICT.refusal(ipaddress.ip_address(address)) == ""


def test_allow_settings_open_only_what_they_name():
    loopback = AddressPolicy(allow_loopback=True)
    assert loopback.refusal(ipaddress.ip_address("127.0.0.1")) == ""
    assert loopback.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) == ""
    assert loopback.refusal(ipaddress.ip_address("10.0.0.1")) == "private"
    private = AddressPolicy(allow_private=True)
    assert private.refusal(ipaddress.ip_address("10.0.0.1")) == ""
    assert private.refusal(ipaddress.ip_address("169.254.169.254")) == "link-local"
    assert private.refusal(ipaddress.ip_address("127.0.0.1")) == "loopback"


def test_a_name_with_one_private_answer_among_public_ones_is_refused(monkeypatch):
    answers = [(socket.AF_INET, "93.184.215.14"), (socket.AF_INET, "10.1.2.3")]
    monkeypatch.setattr(outbound, "resolve", lambda host, port: answers)
    with pytest.raises(BlockedAddress, match="10.1.2.3"):
        checked_addresses("mixed.example", 443, STRICT)


def test_localhost_is_refused_by_name():
    with pytest.raises(BlockedAddress, match="loopback"):
        checked_addresses("localhost", 80, STRICT)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hook",
        "http://[::1]:{port}/hook",
        "http://[::ffff:127.0.0.1]:{port}/hook",
        "http://localhost:{port}/hook",
        "http://2130706433:{port}/hook",
        "http://10.0.0.1:{port}/hook",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_guarded_client_never_connects_to_refused_targets(http_server, url):
    with HttpClient(policy=STRICT) as client, pytest.raises(BlockedAddress) as refused:
        client.post(url.format(port=http_server.port), json={})
    assert refused.value.kind == PERMANENT
    assert not refused.value.sent
    assert http_server.requests == []


def test_a_name_resolving_to_a_private_address_is_refused(monkeypatch):
    monkeypatch.setattr(outbound, "resolve", lambda host, port: [(socket.AF_INET, "10.9.8.7")])
    with HttpClient(policy=STRICT) as client, pytest.raises(BlockedAddress, match="10.9.8.7"):
        client.post("https://hooks.customer.example/clarion", json={})


def test_the_checked_address_is_the_one_connected_to(http_server, monkeypatch):
    """The name is looked up once; the socket goes to that answer (no second lookup)."""
    lookups: list[str] = []

    def fake_dns(host, port):
        lookups.append(host)
        return [(socket.AF_INET, "127.0.0.1")]

    monkeypatch.setattr(outbound, "resolve", fake_dns)
    # A name no real DNS knows: only the checked answer can have reached the server.
    url = f"http://receiver.invalid:{http_server.port}/hook"
    with HttpClient(policy=AddressPolicy(allow_loopback=True)) as client:
        response = client.post(url, json={"a": 1})
    assert response.status == 200
    assert lookups == ["receiver.invalid"]
    [request] = http_server.requests
    assert request.headers["Host"] == f"receiver.invalid:{http_server.port}"


def test_proxies_from_the_environment_are_ignored(http_server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    monkeypatch.setenv("http_proxy", "http://10.0.0.1:3128")
    with HttpClient(policy=AddressPolicy(allow_loopback=True)) as client:
        assert client.post(f"{http_server.url}/hook", json={}).status == 200


def test_unsupported_schemes_are_permanent_errors():
    with HttpClient(policy=STRICT) as client, pytest.raises(HttpError) as error:
        client.post("file:///etc/passwd")
    assert error.value.kind == PERMANENT
    assert not error.value.sent


def test_dns_failure_is_transient(monkeypatch):
    def no_answer(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(outbound, "resolve", no_answer)
    with HttpClient(policy=STRICT) as client, pytest.raises(HttpError) as error:
        client.post("https://nowhere.example/hook", json={})
    assert error.value.kind == TRANSIENT
    assert not error.value.sent


@pytest.mark.parametrize("url", ["http:///no-host", "http://exa mple.com/", "https://[::1/"])
def test_malformed_urls_are_permanent_errors(url):
    with HttpClient(policy=STRICT) as client, pytest.raises(HttpError) as error:
        client.post(url, json={})
    assert error.value.kind == PERMANENT
    assert not error.value.sent


@pytest.fixture
def tls_receiver():
    """A loopback HTTPS server whose certificate names receiver.test, from a throwaway CA."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("receiver.test").configure_cert(context)
    server = RecordingServer()
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    with server, ca.cert_pem.tempfile() as ca_path:
        yield server, ca_path


def test_tls_verifies_the_name_while_connecting_to_the_checked_address(tls_receiver, monkeypatch):
    server, ca_path = tls_receiver
    monkeypatch.setattr(outbound, "resolve", lambda host, port: [(socket.AF_INET, "127.0.0.1")])
    with HttpClient(policy=AddressPolicy(allow_loopback=True)) as client:
        response = client.post(f"https://receiver.test:{server.port}/hook", json={}, verify=ca_path)
    assert response.status == 200
    assert server.requests[0].headers["Host"] == f"receiver.test:{server.port}"


def test_tls_to_a_name_the_certificate_does_not_cover_sends_nothing(tls_receiver, monkeypatch):
    server, ca_path = tls_receiver
    monkeypatch.setattr(outbound, "resolve", lambda host, port: [(socket.AF_INET, "127.0.0.1")])
    with (
        HttpClient(policy=AddressPolicy(allow_loopback=True)) as client,
        pytest.raises(HttpError) as error,
    ):
        client.post(f"https://impostor.test:{server.port}/hook", json={}, verify=ca_path)
    assert error.value.kind == TRANSIENT
    assert not error.value.sent
    assert "certificate" in str(error.value).lower()
    assert server.requests == []


def test_a_tls_error_after_the_request_went_out_is_ambiguous(monkeypatch):
    """Unlike a failed handshake, the receiver has the request and may have acted on it."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("receiver.test").configure_cert(context)
    monkeypatch.setattr(outbound, "resolve", lambda host, port: [(socket.AF_INET, "127.0.0.1")])
    with (
        one_shot_receiver(tls_then_garbage(context)) as (port, received),
        ca.cert_pem.tempfile() as ca_path,
        HttpClient(policy=AddressPolicy(allow_loopback=True)) as client,
        pytest.raises(HttpError) as error,
    ):
        client.post(f"https://receiver.test:{port}/hook", json={"a": 1}, verify=ca_path)
    assert error.value.kind == AMBIGUOUS, error.value
    assert error.value.sent
    assert [request.split(b"\r\n", 1)[0] for request in received] == [b"POST /hook HTTP/1.1"]
