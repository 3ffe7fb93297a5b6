"""The one outbound HTTP client: timeouts, an SSRF guard, no redirects, errors by kind.

Every request a provider makes (webhooks, Twilio, ...) goes through ``HttpClient``. One client
holds one connection pool, so a provider opens one per batch and reuses connections in it.

The SSRF guard lives in the socket layer: the name is resolved once, every address it resolves
to is checked, and the socket connects to a checked address. There is no second lookup that a
DNS rebinding answer could change, and TLS still verifies the certificate against the name.

Errors map to the kinds of ``channels.base``: nothing sent (refused, DNS, connect timeout, 5xx,
429) is transient; a read timeout or a dropped connection after the request went out is
ambiguous; a refused address, a bad URL, a redirect or any other 4xx is permanent.

The read timeout bounds the whole answer (status line, headers and body) from when the request
went out, not each read: a receiver dribbling a byte at a time cannot hold a worker longer.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import http.client
import io
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection
from urllib3.util.retry import Retry

from .base import AMBIGUOUS, PERMANENT, TRANSIENT, Outcome

# Enough of an error body to explain it; a receiver cannot make us buffer more.
MAX_BODY_BYTES = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 1918, shared address space (RFC 6598) and unique local IPv6 (RFC 4193).
PRIVATE_NETWORKS = [
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
]
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class HttpError(Exception):
    """A request that got no usable answer, with its kind (transient, ambiguous, permanent).

    ``sent`` is False when the request certainly never left (refused, unresolved or guarded
    address, bad URL, no connection or TLS handshake).
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        sent: bool = True,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.sent = sent

    def outcome(self, delivery_id: int) -> Outcome:
        """This error as the outcome of the delivery whose request it ended."""
        return Outcome.failed(
            delivery_id, self.kind, str(self), self.retry_after, reached_provider=self.sent
        )


class BlockedAddress(HttpError):
    """The target resolves to an address outbound requests may not reach."""

    def __init__(self, message: str) -> None:
        super().__init__(PERMANENT, message, sent=False)


@dataclass(frozen=True)
class AddressPolicy:
    """Which non-public addresses a guarded client may connect to (none by default)."""

    allow_loopback: bool = False
    allow_private: bool = False

    @classmethod
    def for_webhooks(cls) -> AddressPolicy:
        return cls(
            allow_loopback=settings.WEBHOOK_ALLOW_LOOPBACK,
            allow_private=settings.WEBHOOK_ALLOW_PRIVATE,
        )

    def refusal(self, address: IPAddress) -> str:
        """Why the address is refused ("" when it is allowed)."""
        if isinstance(address, ipaddress.IPv6Address):
            # ::ffff:10.0.0.1, 64:ff9b::a00:1 (NAT64), 2002:a00:1:: (6to4) reach the IPv4
            # address they embed.
            if address.ipv4_mapped is not None:
                return self.refusal(address.ipv4_mapped)
            embedded = [address.sixtofour, *(address.teredo or ())]
            if address in NAT64:
                embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
            for inner in filter(None, embedded):
                reason = self.refusal(inner)
                if reason:
                    return reason
        if address.is_loopback:
            return "" if self.allow_loopback else "loopback"
        if any(address in network for network in PRIVATE_NETWORKS):
            return "" if self.allow_private else "private"
        # Site-local fec0::/10 (deprecated by RFC 3879, still an internal range) is global to
        # Python. IPv4 addresses have no is_site_local.
        for reason in ("link_local", "site_local", "multicast", "unspecified", "reserved"):
            if getattr(address, f"is_{reason}", False):
                return reason.replace("_", "-")
        if not address.is_global:
            return "not public"
        return ""


def resolve(host: str, port: int) -> list[tuple[int, str]]:
    """(family, address) pairs for a name; tests replace this to fake DNS answers."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(family, sockaddr[0]) for family, _, _, _, sockaddr in infos]


def checked_addresses(host: str, port: int, policy: AddressPolicy) -> list[str]:
    """Every address the name resolves to, all allowed, or BlockedAddress for the first that is not.

    One refused answer refuses the name: a record set mixing public and private addresses is
    how a rebinding attack would slip a private one in.
    """
    addresses: list[str] = []
    for _, text in resolve(host, port):
        address = ipaddress.ip_address(text.split("%", 1)[0])
        reason = policy.refusal(address)
        if reason:
            raise BlockedAddress(f"{host} resolves to {address} ({reason}), which is not allowed")
        addresses.append(text)
    if not addresses:
        raise BlockedAddress(f"{host} resolves to no address")
    return addresses


class _GuardedConnectionMixin:
    """Resolve, check, then connect to the checked address (no second DNS lookup)."""

    address_policy: AddressPolicy

    def _new_conn(self) -> socket.socket:
        try:
            addresses = checked_addresses(self._dns_host, self.port, self.address_policy)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        last: OSError | None = None
        for address in addresses:
            try:
                # An IP literal: getaddrinfo parses it, no DNS query is made.
                return urllib3_connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"connect to {self.host} timed out") from exc
            except OSError as exc:
                last = exc
        raise NewConnectionError(self, f"failed to connect to {self.host}: {last}")


class _AnswerReader(io.RawIOBase):
    """The socket's reads, each allowed only what is left until the answer's deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self.sock = sock
        self.raw = sock.makefile("rb", buffering=0)
        self.deadline = deadline
        # Given back when the answer is read: a kept-alive connection's next request must
        # not go out under what was left of this answer's time.
        self.timeout = sock.gettimeout()

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.raw.fileno()

    def readinto(self, buffer) -> int | None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            # A socket timeout: urllib3 reports it as a read timeout, like any other.
            raise TimeoutError("no complete answer within the read timeout")
        self.sock.settimeout(left)
        return self.raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
            with contextlib.suppress(OSError):  # the connection may be gone already
                self.sock.settimeout(self.timeout)
        super().close()


class _SocketUntil:
    """All http.client asks of a socket for an answer (``makefile``), bounded by a deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline

    def makefile(self, mode: str = "rb") -> io.BufferedReader:
        return io.BufferedReader(_AnswerReader(self.sock, self.deadline))


def _answer_until(sock: socket.socket, *args: Any, deadline: float, **kwargs: Any):
    return http.client.HTTPResponse(_SocketUntil(sock, deadline), *args, **kwargs)


class _AnswerDeadlineMixin:
    """The read timeout (urllib3 sets it before asking for the answer) as a deadline for
    the whole answer, body included: it is read from the same file."""

    timeout: Any

    def getresponse(self):
        if isinstance(self.timeout, (int, float)):
            deadline = time.monotonic() + self.timeout
            self.response_class = functools.partial(_answer_until, deadline=deadline)
        try:
            return super().getresponse()
        except ssl.SSLError as exc:
            # The request went out: unlike a failed handshake, a TLS failure now may follow
            # the receiver acting on it. urllib3 would pass it on as requests' SSLError
            # (transient); a plain OSError comes out as a dropped connection (ambiguous).
            raise ConnectionAbortedError(f"TLS error while reading the answer: {exc}") from exc
        finally:
            self.__dict__.pop("response_class", None)


def _pool_classes(policy: AddressPolicy | None) -> dict[str, type]:
    """Pools whose answers have a deadline and, with a policy, whose targets are guarded."""
    mixins: tuple[type, ...] = (_AnswerDeadlineMixin,)
    if policy is not None:
        mixins += (_GuardedConnectionMixin,)
    attrs = {"address_policy": policy}
    plain = type("ClarionHTTPConnection", (*mixins, HTTPConnection), attrs)
    tls = type("ClarionHTTPSConnection", (*mixins, HTTPSConnection), attrs)
    return {
        "http": type("ClarionHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": plain}),
        "https": type("ClarionHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": tls}),
    }


@dataclass
class HttpResponse:
    status: int
    headers: CaseInsensitiveDict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3).

    None when there is none or it cannot be read; at most RETRY_BACKOFF_CAP_SECONDS, so a
    provider cannot park a delivery for ever (nor past the dates a datetime can hold).
    """
    if not value:
        return None
    value = value.strip()
    # ASCII only: str.isdigit() also takes "²", which float() then refuses.
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        seconds = _seconds_until(value, time.time() if now is None else now)
        if seconds is None:
            return None
    return min(max(0.0, seconds), settings.RETRY_BACKOFF_CAP_SECONDS)


def _seconds_until(http_date: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        # "-0000": UTC with no local offset given (RFC 5322 3.3), not this machine's zone.
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - now


def status_error(response: HttpResponse) -> HttpError | None:
    """None for 2xx; otherwise the error the status means."""
    status = response.status
    if 200 <= status < 300:
        return None
    detail = f"HTTP {status}: {response.text[:500]}"
    if status == 429:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return HttpError(TRANSIENT, detail, status=status, retry_after=retry_after)
    # 408: the server gave up waiting for our request, so it did not act on it.
    if status >= 500 or status == 408:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return HttpError(TRANSIENT, detail, status=status, retry_after=retry_after)
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        return HttpError(PERMANENT, f"redirect to {location!r} not followed", status=status)
    return HttpError(PERMANENT, detail, status=status)


def error_for_exception(exc: requests.RequestException) -> HttpError:
    """The kind of a request that failed before a status line came back."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, requests.ConnectTimeout):
        return HttpError(TRANSIENT, text, sent=False)
    if isinstance(exc, requests.ReadTimeout):
        # The request was sent; the receiver may have acted on it.
        return HttpError(AMBIGUOUS, text)
    if isinstance(exc, requests.exceptions.SSLError):
        # Handshake or certificate: nothing was sent. (One while reading the answer comes as
        # a dropped connection, see _AnswerDeadlineMixin.)
        return HttpError(TRANSIENT, text, sent=False)
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        if isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
            return HttpError(TRANSIENT, text, sent=False)
        return HttpError(AMBIGUOUS, text)
    bad_url = (
        requests.exceptions.InvalidURL,
        requests.exceptions.InvalidSchema,
        requests.exceptions.MissingSchema,
    )
    if isinstance(exc, bad_url):
        return HttpError(PERMANENT, text, sent=False)
    return HttpError(AMBIGUOUS, text)


class HttpClient:
    """A session for one batch. ``policy`` guards the targets; None trusts them (provider APIs
    configured by the operator, not URLs supplied through the API)."""

    def __init__(
        self,
        *,
        policy: AddressPolicy | None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        user_agent: str = "Clarion",
    ) -> None:
        self.policy = policy
        self.timeout = (
            connect_timeout or settings.HTTP_CONNECT_TIMEOUT_SECONDS,
            read_timeout or settings.HTTP_READ_TIMEOUT_SECONDS,
        )
        self.session = requests.Session()
        # Proxies and .netrc from the environment would bypass the guard and leak credentials.
        self.session.trust_env = False
        self.session.headers["User-Agent"] = user_agent
        # No hidden retries: a retried POST is a second delivery. Retrying is the pipeline's call.
        adapter = HTTPAdapter(max_retries=Retry(total=0, read=False, redirect=False))
        adapter.poolmanager.pool_classes_by_scheme = _pool_classes(policy)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        """Send one request; any status comes back, only a failure to get one raises HttpError."""
        try:
            scheme = urlsplit(url).scheme
        except ValueError as exc:
            raise HttpError(PERMANENT, f"bad URL: {exc}", sent=False) from exc
        if scheme not in ("http", "https"):
            raise HttpError(PERMANENT, f"unsupported URL scheme {scheme!r}", sent=False)
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(
                method, url, allow_redirects=False, stream=True, **kwargs
            )
        except requests.RequestException as exc:
            raise error_for_exception(exc) from exc
        except ValueError as exc:
            # urllib3 rejects some malformed URLs itself (requests' InvalidURL is caught above).
            raise HttpError(PERMANENT, f"bad URL: {exc}", sent=False) from exc
        with response:
            body = _read_limited(response)
        return HttpResponse(response.status_code, response.headers, body)

    def post(self, url: str, **kwargs: Any) -> HttpResponse:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_limited(response: requests.Response) -> bytes:
    """Up to MAX_BODY_BYTES of the body; a body that breaks off keeps what arrived.

    The status line already told us the outcome, so a failure here changes nothing: nor does
    the answer's deadline passing, which cuts the body off like a read timeout.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(8192):
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_BODY_BYTES:
                break
    except (requests.RequestException, OSError):
        pass
    return b"".join(chunks)[:MAX_BODY_BYTES]
