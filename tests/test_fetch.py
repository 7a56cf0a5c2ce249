"""The package's one HTTP fetcher (tfstyle.core.fetch): schemes and redirects at every hop,
no redirect from a public address into the local network, the whole-download deadline
against trickling servers, size limits, retries and the rate limiter.

Every server is a loopback `http.server` thread; `fetch.TREATED_AS_PUBLIC` makes one of them
stand for a public host.  Nothing here touches the internet.
"""

from __future__ import annotations

import collections
import http.server
import json
import threading
import time

import pytest

from tfstyle.core import fetch

TRICKLE_GAP = 0.5  # seconds between two bytes of a trickling server


class Server:
    """A loopback HTTP server; `hits` counts requests per path.

    /ok                 200 "hello"
    /headers            200, the request headers as JSON
    /to?URL             302 to URL (absolute or relative)
    /loop               302 to /loop, forever
    /big                200 with a 300 KiB body; /big-unsized the same without Content-Length
    /throttled          429 with Retry-After: 7 the first time, then /ok
    /trickle-body       headers at once, then one body byte every TRICKLE_GAP seconds
    /trickle-head       the status line, then one header byte every TRICKLE_GAP seconds
    """

    def __init__(self):
        self.hits: collections.Counter = collections.Counter()
        self.stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, code, body=b"", headers=(), length=True):
                self.send_response(code)
                for name, value in headers:
                    self.send_header(name, value)
                if length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def trickle(self, data: bytes):
                for i in range(len(data)):
                    if server.stop.wait(TRICKLE_GAP):
                        return
                    try:
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                    except OSError:
                        return  # the client hung up, as it should

            def do_GET(self):  # noqa: N802
                path, _, query = self.path.partition("?")
                server.hits[path] += 1
                if path == "/ok":
                    self.send(200, b"hello", [("Content-Type", "text/plain")])
                elif path == "/headers":
                    self.send(200, json.dumps(dict(self.headers)).encode())
                elif path == "/to":
                    self.send(302, headers=[("Location", query)])
                elif path == "/loop":
                    self.send(302, headers=[("Location", "/loop")])
                elif path == "/big":
                    self.send(200, b"x" * 300_000)
                elif path == "/big-unsized":
                    self.send(200, b"x" * 300_000, length=False)
                elif path == "/throttled" and server.hits[path] == 1:
                    self.send(429, b"slow down", [("Retry-After", "7")])
                elif path == "/throttled":
                    self.send(200, b"hello")
                elif path == "/trickle-body":
                    self.send_response(200)
                    self.send_header("Content-Length", "40")
                    self.end_headers()
                    self.wfile.flush()
                    self.trickle(b"y" * 40)
                elif path == "/trickle-head":
                    self.wfile.write(b"HTTP/1.0 200 OK\r\n")
                    self.wfile.flush()
                    self.trickle(b"X-Slow: " + b"z" * 32)
                else:
                    self.send(404, b"no such page")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers(monkeypatch):
    """Two loopback servers: `public` stands for an internet host, `private` for a service on
    the local network."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    public, private = Server(), Server()
    monkeypatch.setattr(fetch, "TREATED_AS_PUBLIC", {("127.0.0.1", public.port)})
    yield public, private
    public.close()
    private.close()


def fetcher(**changes):
    settings = dict(timeout=1.0, deadline=5.0, retries=0, backoff=0.0)
    return fetch.Fetcher(fetch.FetchSettings(**{**settings, **changes}))


def failure(f, url, **kwargs) -> fetch.FetchError:
    with pytest.raises(fetch.FetchError) as err:
        f.get(url, **kwargs)
    return err.value


# --------------------------------------------------------------------------------------------
# Schemes and redirects
# --------------------------------------------------------------------------------------------


def test_only_http_and_https_at_every_hop(servers):
    public, _ = servers
    f = fetcher()
    for url in ("ftp://127.0.0.1/a.jpg", "file:///etc/passwd", "data:,hello", "gopher://x/"):
        assert failure(f, url).reason == "bad_url"
    for target in ("ftp://127.0.0.1/a.jpg", "file:///etc/passwd", "data:text/plain,hello"):
        err = failure(f, public.url(f"/to?{target}"))
        assert err.reason == "redirect_refused" and not err.transient
        assert target.split(":")[0] in err.detail
    assert public.hits["/to"] == 3 and f.requests == 3


def test_no_redirect_from_a_public_address_into_the_local_network(servers):
    public, private = servers
    f = fetcher()
    for host in ("127.0.0.1", "localhost"):  # another port of loopback; a name that resolves
        err = failure(f, public.url("/to?" + private.url("/ok", host=host)))
        assert err.reason == "redirect_refused" and "non-public" in err.detail
    assert private.hits["/ok"] == 0
    # A relative redirect on the same public server is fine, so is a first URL on the local
    # network (a mirror on the LAN) and its redirects there.
    assert f.get(public.url("/to?/ok")).body == b"hello"
    result = f.get(private.url("/to?" + private.url("/ok", host="localhost")))
    assert result.body == b"hello" and result.url.endswith(f":{private.port}/ok")


def test_redirects_are_bounded(servers):
    public, _ = servers
    err = failure(fetcher(max_redirects=3), public.url("/loop"))
    assert err.reason == "too_many_redirects" and not err.transient
    assert public.hits["/loop"] == 4  # the first request and three redirects
    assert fetcher(max_redirects=0).get(public.url("/ok")).body == b"hello"
    assert failure(fetcher(max_redirects=0), public.url("/to?/ok")).reason == \
        "too_many_redirects"


def test_callers_headers_stay_with_their_origin(servers):
    public, private = servers
    f = fetcher()
    key = {"Ocp-Apim-Subscription-Key": "secret"}
    same = json.loads(f.get(public.url("/to?/headers"), key).body)
    assert same["Ocp-Apim-Subscription-Key"] == "secret"
    assert same["User-Agent"] == fetch.FetchSettings().user_agent
    fetch.TREATED_AS_PUBLIC.add(("127.0.0.1", private.port))  # another public origin
    other = json.loads(f.get(public.url("/to?" + private.url("/headers")), key).body)
    assert "Ocp-Apim-Subscription-Key" not in other and "User-Agent" in other


# --------------------------------------------------------------------------------------------
# Time and size
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/trickle-body", "/trickle-head"])
def test_deadline_holds_against_a_trickling_server(servers, path):
    public, _ = servers
    f = fetcher(timeout=1.0, deadline=1.5)  # each byte comes well within the read timeout
    started = time.monotonic()
    err = failure(f, public.url(path))
    elapsed = time.monotonic() - started
    assert err.reason == "timeout" and "deadline" in err.detail and err.transient
    assert 1.5 <= elapsed < 1.5 + 1.0, elapsed


def test_deadline_counts_redirects_too(servers):
    public, _ = servers
    started = time.monotonic()
    err = failure(fetcher(deadline=1.0), public.url("/to?/trickle-body"))
    assert err.reason == "timeout" and time.monotonic() - started < 2.0


def test_size_limit(servers):
    public, _ = servers
    f = fetcher(max_bytes=100_000)
    for path in ("/big", "/big-unsized"):
        err = failure(f, public.url(path))
        assert err.reason == "too_large" and not err.transient
    assert len(f.get(public.url("/big"), max_bytes=300_000).body) == 300_000
    assert failure(f, public.url("/ok"), max_bytes=4).reason == "too_large"


def test_http_errors_say_the_status_and_retries_honour_retry_after(servers):
    public, _ = servers
    err = failure(fetcher(retries=3), public.url("/missing"))
    assert (err.reason, err.status, err.attempts, err.transient) == ("http_404", 404, 1, False)
    assert "HTTP 404" in str(err) and public.hits["/missing"] == 1
    waits = []
    f = fetch.Fetcher(fetch.FetchSettings(retries=2, backoff=0.5, max_retry_after=5.0),
                      sleep=waits.append)
    result = f.get(public.url("/throttled"))
    assert result.body == b"hello" and result.attempts == 2
    assert waits == [5.0]  # Retry-After: 7, bounded by max_retry_after
    assert fetch.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert fetch.parse_retry_after("soon") is None


def test_refused_connection_is_a_transient_network_error(servers):
    public, _ = servers
    port = public.port
    public.close()
    err = failure(fetcher(), f"http://127.0.0.1:{port}/ok")
    assert err.reason == "network_error" and err.transient


def test_addresses_that_are_not_public():
    for ip in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.4", "169.254.169.254",
               "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1",
               "224.0.0.1"):
        assert not fetch.is_public_address(ip), ip
    for ip in ("8.8.8.8", "151.101.1.69", "2606:4700::1111"):
        assert fetch.is_public_address(ip), ip


# --------------------------------------------------------------------------------------------
# Rate limit
# --------------------------------------------------------------------------------------------


def test_rate_limiter_spaces_requests_per_host_and_across_threads():
    now = [100.0]
    waits = []
    lock = threading.Lock()

    def sleep(seconds):
        with lock:
            waits.append(round(seconds, 6))

    limiter = fetch.RateLimiter(0.1, clock=lambda: now[0], sleep=sleep)
    threads = [threading.Thread(target=limiter.acquire, args=("a.example",))
               for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == [0.1, 0.2, 0.3, 0.4]  # the first goes at once
    limiter.acquire("b.example")  # another host has its own slots
    assert len(waits) == 4
    shared = fetch.RateLimiter(0.1, per_host=False, clock=lambda: now[0], sleep=sleep)
    shared.acquire("a.example")
    shared.acquire("b.example")
    assert waits[-1] == 0.1
    fetch.RateLimiter(0, sleep=sleep).acquire("a.example")
    assert len(waits) == 5
