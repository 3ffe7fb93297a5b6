"""The one outbound HTTP client: timeouts, an SSRF guard, no redirects, errors by kind.

Every request a provider makes (webhooks, Twilio, ...) goes through ``HttpClient``. One client
holds one connection pool, so a provider opens one per batch and reuses connections in it.

The SSRF guard lives in the socket layer: the name is resolved once, every address it resolves
to is checked, and the socket connects to a checked address. There is no second lookup that a
DNS rebinding answer could change, and TLS still verifies the certificate against the name.

Errors map to the kinds of ``channels.base``: nothing sent (refused, DNS, connect timeout, 5xx,
429) is transient; a read timeout or a dropped connection after the request went out is
ambiguous; a refused address, a bad URL, a redirect or any other 4xx is permanent.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import time
from dataclasses import dataclass
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

from .base import AMBIGUOUS, PERMANENT, TRANSIENT

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
    """A request that got no usable answer, with its kind (transient, ambiguous, permanent)."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


class BlockedAddress(HttpError):
    """The target resolves to an address outbound requests may not reach."""

    def __init__(self, message: str) -> None:
        super().__init__(PERMANENT, message)


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
        for reason in ("link_local", "multicast", "unspecified", "reserved"):
            if getattr(address, f"is_{reason}"):
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


def _guarded_pool_classes(policy: AddressPolicy) -> dict[str, type]:
    attrs = {"address_policy": policy}
    plain = type("GuardedHTTPConnection", (_GuardedConnectionMixin, HTTPConnection), attrs)
    tls = type("GuardedHTTPSConnection", (_GuardedConnectionMixin, HTTPSConnection), attrs)
    return {
        "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": plain}),
        "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": tls}),
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
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


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
        return HttpError(TRANSIENT, text)
    if isinstance(exc, requests.ReadTimeout):
        # The request was sent; the receiver may have acted on it.
        return HttpError(AMBIGUOUS, text)
    if isinstance(exc, requests.exceptions.SSLError):
        return HttpError(TRANSIENT, text)
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        if isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
            return HttpError(TRANSIENT, text)
        return HttpError(AMBIGUOUS, text)
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema)):
        return HttpError(PERMANENT, text)
    if isinstance(exc, requests.exceptions.MissingSchema):
        return HttpError(PERMANENT, text)
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
        if policy is not None:
            adapter.poolmanager.pool_classes_by_scheme = _guarded_pool_classes(policy)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        """Send one request; any status comes back, only a failure to get one raises HttpError."""
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise HttpError(PERMANENT, f"unsupported URL scheme {scheme!r}")
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(
                method, url, allow_redirects=False, stream=True, **kwargs
            )
        except HttpError:
            raise
        except (requests.RequestException, ValueError) as exc:
            if isinstance(exc, requests.RequestException):
                raise error_for_exception(exc) from exc
            raise HttpError(PERMANENT, f"bad request: {exc}") from exc
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

    The status line already told us the outcome, so a failure here changes nothing.
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
