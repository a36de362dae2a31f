"""Rollout webhooks against a real HTTP server on 127.0.0.1: the event arrives as JSON, a
503 is retried, a redirect is not followed, a dead port is logged and never raised, the
queue drops what does not fit; URLs that could reach this machine or its network are
refused with a message naming the problem."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.errors import InvalidRequest
from experiments.webhooks import (
    Delivery,
    WebhookEvent,
    WebhookSender,
    _requests,
    checked_webhook_url,
    deliver,
)

EVENT = WebhookEvent(
    event="rollback",
    experiment="canary-1",
    at=1_700_000_000.5,
    weights={"v1": 100, "v2": 0},
    reason="p95 2.1x the incumbent's",
    by="guardrail",
)


@dataclass
class Receiver:
    """What the server was sent, and what it answers: ``statuses`` in turn, then 200."""

    url: str
    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.release.set()  # answer at once unless a test holds it


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got = box[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.requests.append(("POST", self.path, dict(self.headers), body))
            got.arrived.set()
            got.release.wait(10)
            status = got.statuses.pop(0) if got.statuses else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            box[0].requests.append(("GET", self.path, dict(self.headers), b""))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}/hooks/rollout"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box[0]
    box[0].release.set()
    server.shutdown()
    server.server_close()


def test_the_event_arrives_as_json(receiver):
    done = deliver(receiver.url + "?token=abc", EVENT, allow_private=True)
    assert done == Delivery(delivered=True, attempts=1, status=200)
    [(method, path, headers, body)] = receiver.requests
    assert (method, path) == ("POST", "/hooks/rollout?token=abc")
    assert headers["Content-Type"] == "application/json"
    assert len(headers["Webhook-Id"]) == 32
    assert json.loads(body) == {
        "event": "rollback",
        "experiment": "canary-1",
        "at": 1_700_000_000.5,
        "weights": {"v1": 100, "v2": 0},
        "reason": "p95 2.1x the incumbent's",
        "by": "guardrail",
    }


def test_a_503_is_retried_with_the_same_id_then_succeeds(receiver):
    receiver.statuses = [503, 502]
    done = deliver(receiver.url, EVENT, allow_private=True, backoff_s=0.01)
    assert done == Delivery(delivered=True, attempts=3, status=200)
    ids = {headers["Webhook-Id"] for _, _, headers, _ in receiver.requests}
    assert len(receiver.requests) == 3 and len(ids) == 1  # the receiver can drop repeats


def test_a_4xx_is_final_and_logged_with_the_host_only(receiver, caplog):
    receiver.statuses = [404]
    done = deliver(receiver.url + "?token=s3cret", EVENT, allow_private=True, backoff_s=0.01)
    assert done == Delivery(delivered=False, attempts=1, status=404, error="HTTP 404")
    assert "webhook rollback of experiment canary-1 to 127.0.0.1 failed" in caplog.text
    assert "s3cret" not in caplog.text


def test_a_redirect_is_not_followed(receiver):
    receiver.statuses = [302]
    done = deliver(receiver.url, EVENT, allow_private=True, backoff_s=0.01)
    assert (done.delivered, done.attempts, done.status) == (False, 1, 302)
    assert "redirects are not followed" in done.error
    assert [(m, p) for m, p, _, _ in receiver.requests] == [("POST", "/hooks/rollout")]


def test_a_dead_port_is_logged_not_raised(caplog):
    with socket.socket() as probe:  # a port nobody listens on once this is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook?token=s3cret"
    done = deliver(url, EVENT, allow_private=True, timeout_s=2, attempts=2, backoff_s=0.01)
    assert done == Delivery(delivered=False, attempts=2, status=None, error="ConnectError")
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == (
        "webhook rollback of experiment canary-1 to 127.0.0.1 failed after 2 attempt(s): "
        "ConnectError"
    )
    assert "s3cret" not in caplog.text


def test_httpx_s_own_request_log_carries_no_query(receiver, caplog):
    caplog.set_level(logging.INFO, logger="httpx")
    assert deliver(receiver.url + "?token=s3cret", EVENT, allow_private=True).delivered
    assert f'HTTP Request: POST {receiver.url} "HTTP/1.0 200 OK"' in caplog.text
    assert "s3cret" not in caplog.text


def test_a_private_address_is_refused_again_at_delivery(receiver, caplog):
    done = deliver(receiver.url, EVENT)  # allow_private defaults to False
    assert (done.delivered, done.attempts, done.status) == (False, 0, None)
    assert "127.0.0.1, a loopback address" in done.error
    assert receiver.requests == []
    assert "webhook to 127.0.0.1 refused" in caplog.text


def test_a_public_url_is_sent_to_the_address_checked_with_its_host_kept():
    # What stops DNS from answering differently between the check and the connection:
    # the request goes to the checked address itself (an IP literal here: no DNS offline).
    [pinned] = _requests("https://[2606:4700::6810:84e5]:8443/h?t=1", EVENT, False)
    assert str(pinned.url) == "https://[2606:4700::6810:84e5]:8443/h?t=1"
    assert pinned.headers["Host"] == "[2606:4700::6810:84e5]:8443"
    assert pinned.extensions["sni_hostname"] == "2606:4700::6810:84e5"
    [plain] = _requests("http://93.184.215.14/h", EVENT, False)
    assert (plain.url.host, plain.headers["Host"], plain.extensions) == (
        "93.184.215.14",
        "93.184.215.14",
        {},
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("file:///etc/passwd", "must be http or https, not 'file'"),
        ("ftp://example.com/hook", "must be http or https, not 'ftp'"),
        ("example.com/hook", "must be http or https, not 'without a scheme'"),
        ("http:///hook", "has no host"),
        ("http://user:pass@example.com/hook", "must not carry credentials"),
        ("https://token@example.com/hook", "must not carry credentials"),
        ("https://example.com/" + "a" * 2040, "2060 characters long; at most 2048"),
        ("http://example.com\\@127.0.0.1/", "without spaces or backslashes"),
        ("http://exam\tple.com/", "printable ASCII"),
        ("http://example.com:99999/", "cannot be parsed"),
        ("http://127.0.0.1/hook", "is or resolves to 127.0.0.1, a loopback address"),
        ("http://localhost:8080/hook", "a loopback address"),
        ("http://10.0.0.1/hook", "is or resolves to 10.0.0.1, a private address"),
        ("http://192.168.1.20/hook", "a private address"),
        ("http://[::1]/hook", "is or resolves to ::1, a loopback address"),
        ("http://[::ffff:127.0.0.1]/hook", "a loopback address"),
        ("http://[::ffff:10.1.2.3]/hook", "a private address"),
        ("http://[fd00::1]/hook", "a private address"),
        ("http://[fe80::1]/hook", "a link-local address"),
        ("http://0x7f000001/hook", "0x7f000001' is or resolves to 127.0.0.1, a loopback"),
        ("http://2130706433/hook", "resolves to 127.0.0.1, a loopback address"),
        ("http://127.1/hook", "resolves to 127.0.0.1, a loopback address"),
        # Dotted with a leading zero: octal to getaddrinfo, invalid to httpx.
        ("http://0177.0.0.1/hook", "Invalid IPv4 address: '0177.0.0.1'"),
        ("http://169.254.169.254/latest/meta-data", "a link-local address"),
        ("http://0.0.0.0/hook", "an unspecified address"),
        ("http://224.0.0.1/hook", "a multicast address"),
        ("http://240.0.0.1/hook", "a (private|reserved) address"),
        ("http://100.64.0.1/hook", "a non-public address"),
    ],
)
def test_a_url_that_may_not_be_a_webhook_is_refused_naming_the_problem(url, problem):
    with pytest.raises(InvalidRequest, match=problem) as refused:
        checked_webhook_url(url, allow_private=False)
    assert refused.value.error_code == 400


def test_a_url_that_is_not_a_string_is_refused():
    with pytest.raises(InvalidRequest, match="must be a string, not int"):
        checked_webhook_url(42, allow_private=False)  # type: ignore[arg-type]


def test_a_public_url_comes_back_unchanged_and_private_ones_when_allowed():
    public = "https://93.184.215.14:8443/hooks/rollout?token=abc#x"
    assert checked_webhook_url(public, allow_private=False) == public
    assert checked_webhook_url("http://[2606:4700::6810:84e5]/h", allow_private=False)
    local = "http://127.0.0.1:9000/hook"
    assert checked_webhook_url(local, allow_private=True) == local
    # Everything but the address is still checked.
    with pytest.raises(InvalidRequest, match="credentials"):
        checked_webhook_url("http://a:b@127.0.0.1/", allow_private=True)


def test_the_sender_delivers_in_the_background_and_drops_what_does_not_fit(receiver, caplog):
    sender = WebhookSender(allow_private=True, max_queued=1, backoff_s=0.01)
    receiver.release.clear()  # the receiver holds the first delivery
    assert sender.send(receiver.url, EVENT)  # returns at once; the thread is sending it
    assert receiver.arrived.wait(10)
    step = WebhookEvent("step", "canary-1", 1.0, {"v1": 50, "v2": 50}, "step 2 of 4", "ops")
    assert sender.send(receiver.url, step)  # waits in the queue
    assert not sender.send(receiver.url, step)  # the queue is full: dropped
    assert "webhook step of experiment canary-1 to 127.0.0.1 dropped" in caplog.text
    receiver.release.set()
    sender.close(timeout_s=10)
    assert [json.loads(body)["event"] for *_, body in receiver.requests] == ["rollback", "step"]
    assert not sender.send(receiver.url, EVENT)  # closed


def test_an_event_is_one_of_the_four_with_whole_weights():
    with pytest.raises(ValueError, match="event must be one of"):
        WebhookEvent("pause", "canary-1", 1.0, {"v1": 100}, "", "ops")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole numbers"):
        WebhookEvent("step", "canary-1", 1.0, {"v1": 99.5}, "", "ops")  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="max_queued"):
        WebhookSender(max_queued=0)
