"""Webhooks of rollouts: a URL told, with the reason, when a rollout starts, steps, is
promoted or is rolled back.

A webhook URL is checked when it is configured (``checked_webhook_url``: a 400 naming the
problem) and again at every delivery, because DNS can change in between. Unless private
addresses are allowed, a delivery connects to the very address it checked (the URL's host
goes in the Host header and TLS's server name), so a name that resolves elsewhere a moment
later cannot reach a private one; redirects are never followed, so a public URL cannot
send the request on to a private one either.

Delivery never raises and never blocks the rollout: ``WebhookSender`` sends from one
daemon thread through a bounded queue and drops, with a warning, what does not fit.
Failures are logged with the URL's host and the status, never the whole URL (its query
may carry the receiver's token).
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import httpx

from core.errors import InvalidRequest

logger = logging.getLogger("rag.experiments.webhooks")

EventName = Literal["start", "step", "promote", "rollback"]
EVENTS: frozenset[str] = frozenset(get_args(EventName))
MAX_URL_LENGTH = 2048
USER_AGENT = "pdf-rag-bento-webhooks/1"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# -- the URL ---------------------------------------------------------------------------------


def checked_webhook_url(url: str, allow_private: bool) -> str:
    """``url`` unchanged when it may be a webhook: http or https, a host, no credentials,
    at most 2,048 characters of printable ASCII, read alike by ``urllib`` and by ``httpx``
    (which sends it), and -- unless ``allow_private`` -- a host that is and resolves only
    to public addresses (IP literals in any spelling ``getaddrinfo`` accepts: 2130706433,
    0x7f000001, 127.1, ::ffff:127.0.0.1...; 0177.0.0.1, which httpx reads otherwise, is
    refused as unsendable).

    Raises:
        InvalidRequest: naming the problem.
    """
    host, port = _parsed(url)
    if not allow_private:
        _public_addresses(host, port)
    return url


def _parsed(url: object) -> tuple[str, int]:
    """The host and port of a webhook URL, read as ``httpx`` will read it; every check of
    ``checked_webhook_url`` but the address one."""
    if not isinstance(url, str):
        raise InvalidRequest(f"webhook URL must be a string, not {type(url).__name__}")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(
            f"webhook URL is {len(url)} characters long; at most {MAX_URL_LENGTH} are allowed"
        )
    # urlsplit drops tabs and newlines and parsers disagree on backslashes: such a URL
    # would be checked as one host and sent to another, so it is refused.
    if not url.isascii() or not url.isprintable() or any(c in url for c in " \\"):
        raise InvalidRequest(
            "webhook URL must be printable ASCII without spaces or backslashes "
            "(percent-encode the rest; an international host name in its xn-- form)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"webhook URL cannot be parsed: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidRequest(
            f"webhook URL must be http or https, not {parts.scheme or 'without a scheme'!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest(
            "webhook URL must not carry credentials (user:password@): put a token in the "
            "path or query instead"
        )
    host = parts.hostname
    if not host:
        raise InvalidRequest("webhook URL has no host")
    try:
        sent = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidRequest(f"webhook URL cannot be sent: {exc}") from exc
    default = 443 if parts.scheme.lower() == "https" else 80
    # httpx writes a default port as None; urllib keeps what the URL says.
    if sent.host != host or (sent.port or default) != (port or default):
        raise InvalidRequest("webhook URL is ambiguous: its host reads differently to HTTP")
    return host, port or default


def _public_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal to itself), when all are public.

    Raises:
        InvalidRequest: naming the address and what it is, or that ``host`` does not
            resolve.
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise InvalidRequest(f"webhook host {host!r} does not resolve: {exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    for address in addresses:
        kind = refused_kind(ipaddress.ip_address(address.split("%")[0]))
        if kind is not None:
            article = "an" if kind[0] in "aeiou" else "a"
            raise InvalidRequest(
                f"webhook host {host!r} is or resolves to {address}, {article} {kind} "
                "address: webhooks go to public addresses only"
            )
    return addresses


def refused_kind(address: IpAddress) -> str | None:
    """What makes ``address`` no place for a webhook ("loopback", "private", ...), or None
    for a public one. IPv4 inside IPv6 (mapped ``::ffff:a.b.c.d``, 6to4) is judged as the
    IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is not None:
            return refused_kind(inner)
    for kind, flag in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return kind
    # 100.64.0.0/10 (carrier-grade NAT) and the like: neither private nor public.
    return None if address.is_global else "non-public"


# -- the event -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookEvent:
    """One rollout change, as a webhook receives it."""

    event: EventName
    experiment: str
    at: float  # Unix time of the change
    weights: dict[str, int]  # the weights after the change
    reason: str
    by: str

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"event must be one of {sorted(EVENTS)}, not {self.event!r}")
        if not all(isinstance(w, int) and not isinstance(w, bool) for w in self.weights.values()):
            raise ValueError(f"weights must be whole numbers, got {self.weights!r}")

    def to_json(self) -> dict[str, Any]:
        """The JSON body of the POST."""
        return {
            "event": self.event,
            "experiment": self.experiment,
            "at": self.at,
            "weights": dict(self.weights),
            "reason": self.reason,
            "by": self.by,
        }


# -- delivery --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What became of one event: ``delivered`` on a 2xx; ``status`` the last HTTP status
    (None when none came); ``error`` why not, without the URL."""

    delivered: bool
    attempts: int
    status: int | None = None
    error: str = ""


def deliver(
    url: str,
    event: WebhookEvent,
    *,
    allow_private: bool = False,
    timeout_s: float = 5.0,
    attempts: int = 3,
    backoff_s: float = 0.5,
) -> Delivery:
    """POST ``event`` as JSON to ``url``, in the caller's thread: each try waits at most
    ``timeout_s`` to connect and as long for each read or write; tries are
    ``backoff_s`` x 1, 2, 4... apart. Connection errors, timeouts, 429 and 5xx are retried
    (the next try goes to the host's next checked address, if it has more); a 3xx (never
    followed) or another 4xx is final. Every try carries the same ``Webhook-Id`` header,
    so the receiver can drop repeats. Never raises: a refused URL or a failed delivery is
    logged (the URL's host and the status, never the URL) and returned."""
    _redact_httpx_request_logs()
    host = _host_of(url)
    try:
        requests = _requests(url, event, allow_private)
    except InvalidRequest as exc:
        logger.warning("webhook to %s refused: %s", host, exc)
        return Delivery(False, 0, error=str(exc))
    status: int | None = None
    error = ""
    tried = 0
    with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
        for tried in range(1, max(1, attempts) + 1):
            if tried > 1:
                time.sleep(backoff_s * 2 ** (tried - 2))
            try:
                status = client.send(requests[(tried - 1) % len(requests)]).status_code
            except httpx.HTTPError as exc:  # connection refused, timeouts, resets
                status, error = None, type(exc).__name__
                continue
            if 200 <= status < 300:
                return Delivery(True, tried, status)
            error = f"HTTP {status}" + (" (redirects are not followed)" if status < 400 else "")
            if status != 429 and status < 500:
                break
    logger.warning(
        "webhook %s of experiment %s to %s failed after %d attempt(s): %s",
        event.event,
        event.experiment,
        host,
        tried,
        error,
    )
    return Delivery(False, tried, status, error)


def _requests(url: str, event: WebhookEvent, allow_private: bool) -> list[httpx.Request]:
    """The POST to send, checked again now (DNS may have changed since the URL was
    configured). Unless ``allow_private``, one request per address just checked, each
    connecting to that address itself, with the URL's host in the Host header and as TLS
    server name (the certificate is verified against the host, as usual): httpx resolving
    the name again could get another answer."""
    host, port = _parsed(url)
    sent = httpx.URL(url)
    headers = {"User-Agent": USER_AGENT, "Webhook-Id": uuid.uuid4().hex}
    body = event.to_json()
    if allow_private:
        return [httpx.Request("POST", sent, json=body, headers=headers)]
    headers["Host"] = sent.netloc.decode("ascii")
    extensions = {"sni_hostname": host} if sent.scheme == "https" else {}
    return [
        httpx.Request(
            "POST",
            sent.copy_with(host=address.split("%")[0]),
            json=body,
            headers=headers,
            extensions=extensions,
        )
        for address in _public_addresses(host, port)
    ]


def _host_of(url: object) -> str | None:
    """The host to name in a log line (never the whole URL); None when there is none."""
    try:
        return urlsplit(url).hostname if isinstance(url, str) else None
    except ValueError:
        return None


class _WithoutQuery(logging.Filter):
    """httpx logs every request's full URL at INFO; a webhook's query may hold a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                a.copy_with(query=None, fragment=None) if isinstance(a, httpx.URL) else a
                for a in record.args
            )
        return True


_httpx_filter = _WithoutQuery()


def _redact_httpx_request_logs() -> None:
    # On first use rather than on import; adding a filter twice is a no-op.
    logging.getLogger("httpx").addFilter(_httpx_filter)


# -- in the background -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    url: str
    event: WebhookEvent


class WebhookSender:
    """Delivers events from one daemon thread, in order, so a rollout never waits on a
    receiver. At most ``max_queued`` events wait; ``send`` drops (and logs) any more."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
        max_queued: int = 100,
    ) -> None:
        """``allow_private``, ``timeout_s``, ``attempts`` and ``backoff_s`` as ``deliver``
        takes them. Raises ValueError for a limit below 1 (a timeout of 0 or less)."""
        if max_queued < 1 or attempts < 1 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError(
                "max_queued and attempts must be >= 1, timeout_s > 0 and backoff_s >= 0; got "
                f"{max_queued}, {attempts}, {timeout_s} and {backoff_s}"
            )
        self._options: dict[str, Any] = {
            "allow_private": allow_private,
            "timeout_s": timeout_s,
            "attempts": attempts,
            "backoff_s": backoff_s,
        }
        self._max_queued = max_queued
        self._queue: queue.Queue[_Job | None] = queue.Queue(max_queued)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def send(self, url: str, event: WebhookEvent) -> bool:
        """Queue ``event`` for ``url`` without waiting. Returns False when it was dropped
        (the queue is full, or the sender is closed), which is logged."""
        dropped = "sender closed" if self._closed else ""
        if not dropped:
            try:
                self._queue.put_nowait(_Job(url, event))
                return True
            except queue.Full:
                dropped = f"{self._max_queued} deliveries already queued"
        logger.warning(
            "webhook %s of experiment %s to %s dropped: %s",
            event.event,
            event.experiment,
            _host_of(url),
            dropped,
        )
        return False

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued, then stop the thread; waits at most about ``timeout_s``
        (what is left then is delivered by the daemon thread while the process lives)."""
        deadline = time.monotonic() + timeout_s
        if not self._closed:
            self._closed = True
            try:  # after every queued job; waits only while the queue is full
                self._queue.put(None, timeout=timeout_s)
            except queue.Full:
                logger.warning("webhooks: the queue did not drain within %.1f s", timeout_s)
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                deliver(job.url, job.event, **self._options)
            except Exception:  # deliver never raises; a bug must not end the thread
                logger.exception("webhook %s of %s failed", job.event.event, job.event.experiment)
