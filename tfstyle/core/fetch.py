"""The package's one HTTP(S) fetcher: BAM image downloads and the texture-word web providers.

    fetcher = Fetcher(FetchSettings(timeout=20, max_bytes=64 << 20),
                      limiter=RateLimiter(0.2, per_host=False))
    result = fetcher.get("https://example.com/a.jpg")   # FetchResult, or raises FetchError

What it promises, whoever calls it:

* **http and https only, at every hop.**  Requests are made with `http.client` directly; no
  urllib opener, so no FTP, file or data handler exists to be reached.  A redirect to any other
  scheme is refused (`redirect_refused`).
* **Bounded redirects**: 301, 302, 303, 307 and 308 are followed at most `max_redirects`
  times (`too_many_redirects` after that).  Headers given by the caller (an API key) are not
  sent on to another origin.
* **No redirect into the local network**: the host of every hop is resolved and the
  connection is made to the address that was checked.  Once a hop was answered from a public
  address, a later hop to a loopback, private, link-local or otherwise non-public address is
  refused (`redirect_refused`).  A first URL on a private address (a mirror on the LAN) is
  allowed.  Tests mark their 127.0.0.1 servers as public with `TREATED_AS_PUBLIC`.
* **Time**: `timeout` bounds connecting and each read; `deadline` bounds the whole exchange
  of one attempt, from its first connection on (redirects included): a watchdog shuts the socket down when it passes, so a
  server trickling a byte at a time is cut within a fraction of a second of the deadline.
  (Name resolution is bounded by the system resolver's own timeouts, not by these.)
* **Size**: a body over `max_bytes` is abandoned as soon as it is known to be (Content-Length,
  or while streaming in reads of at most 64 KiB).
* **Politeness**: every request (each hop, each retry) waits for its slot in the rate limiter
  and carries the User-Agent.  Transient failures (timeouts, network errors, HTTP 408, 425,
  429, 5xx, a body shorter than its Content-Length) are retried `retries` times after
  `backoff * 2**n` seconds (plus up to 25% jitter), or after the server's Retry-After when
  that is longer, up to `max_retry_after`.

A `FetchError` says what happened in `reason` (`http_404`, `timeout`, `too_large`,
`redirect_refused`, `too_many_redirects`, `incomplete`, `network_error`, `tls_error`,
`bad_url`), in `detail`, and whether asking again later may help (`transient`).  Environment
proxies are not used.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http.client
import ipaddress
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping

from tfstyle.core.config import Config, setting

#: (ip, port) pairs treated as public addresses; only tests put anything here, so that loopback
#: servers can stand for "the internet" in the redirect rules.
TREATED_AS_PUBLIC: set[tuple[str, int]] = set()

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
READ_SIZE = 64 * 1024


class FetchError(Exception):
    """A URL could not be fetched.

    Attributes: `reason` (short, machine-readable: `http_404`, `timeout`, ...), `detail`
    (for people), `transient` (asking again later may succeed), `status` (the HTTP status, if
    one came), `retry_after` (seconds the server asked for), `attempts` (requests made).
    """

    def __init__(self, reason: str, detail: str = "", *, transient: bool = False,
                 status: int | None = None, retry_after: float | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail, self.transient = reason, detail, transient
        self.status, self.retry_after, self.attempts = status, retry_after, 1


@dataclasses.dataclass(frozen=True)
class FetchSettings(Config):
    """How one fetcher talks to servers (see the module docstring)."""
    timeout: float = setting(20.0, "Seconds for connecting and for each read.", above=0)
    deadline: float = setting(100.0, "Seconds one attempt (redirects included) may take in "
                              "all.", above=0)
    retries: int = setting(3, "Extra attempts after a transient failure.", min=0, max=20)
    backoff: float = setting(1.0, "Seconds before the first retry; doubled for each further "
                             "one.", min=0, max=600)
    max_retry_after: float = setting(60.0, "Longest Retry-After honoured (seconds).", min=0)
    max_bytes: int = setting(64 * 1024 * 1024, "Largest body accepted (bytes).", min=1)
    max_redirects: int = setting(5, "Redirects followed at most.", min=0, max=20)
    user_agent: str = setting("tfstyle/0.1 (Python http.client)", "User-Agent header.")

    def validate(self):
        self.need(self.user_agent.strip(), "user_agent", "must not be blank")


@dataclasses.dataclass(frozen=True)
class FetchResult:
    """A fetched body, its Content-Type, the URL it finally came from and the attempts made."""
    body: bytes
    content_type: str
    url: str
    attempts: int


class RateLimiter:
    """At most one request start per `interval` seconds, per host (or over all hosts with
    `per_host=False`), shared by all threads.  Each caller reserves the next free slot and
    sleeps until it, so threads never wait for each other's sleeps.  `interval <= 0`: no
    limit."""

    def __init__(self, interval: float, per_host: bool = True,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval, self.per_host = max(0.0, interval), per_host
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}

    def acquire(self, host: str = "") -> None:
        """Blocks until a request to `host` may start."""
        if not self.interval:
            return
        key = host.lower() if self.per_host else ""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next.get(key, now))
            self._next[key] = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


def is_public_address(ip: str, port: int | None = None) -> bool:
    """Whether `ip` is a global unicast address (not loopback, private, link-local, shared,
    reserved or multicast); `(ip, port)` in TREATED_AS_PUBLIC also counts as public."""
    if (ip, port) in TREATED_AS_PUBLIC:
        return True
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def requote(url: str) -> str:
    """`url` with characters a URL may not hold (spaces, non-ASCII) percent-encoded in its path
    and query, existing %XX escapes kept, and the fragment dropped."""
    parts = urllib.parse.urlsplit(url)
    safe = "/%:@!$&'()*+,;=-._~"
    return urllib.parse.urlunsplit((
        parts.scheme, parts.netloc, urllib.parse.quote(parts.path, safe=safe),
        urllib.parse.quote(parts.query, safe=safe + "?"), ""))


def _split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of an http(s) URL; FetchError bad_url otherwise."""
    try:
        parts = urllib.parse.urlsplit(url)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError as err:
        raise FetchError("bad_url", f"{err}: {url}") from None
    if scheme not in ("http", "https") or not host:
        raise FetchError("bad_url", f"not an http(s) URL: {url}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or (443 if scheme == "https" else 80), target


class _Exchange:
    """One attempt: the first request and its redirects, under one deadline.

    Opens the connections itself (every address checked before connecting) and keeps a
    duplicate of each socket so that the watchdog can shut it down when the deadline passes,
    whatever call is blocked on it (connect, TLS handshake, headers, body).
    """

    def __init__(self, deadline_s: float):
        self.deadline_s = deadline_s
        self.deadline: float | None = None  # set when the first connection starts
        self.expired = False
        self.public_seen = False
        self._lock = threading.Lock()
        self._watched: list[socket.socket] = []
        self._timer: threading.Timer | None = None

    def _start(self) -> None:
        """Starts the clock (the wait for the first rate-limit slot does not count)."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.deadline_s
            self._timer = threading.Timer(self.deadline_s, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._watched:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            for sock in self._watched:
                sock.close()
            self._watched.clear()

    def remaining(self) -> float:
        if self.deadline is None:
            return self.deadline_s
        return self.deadline - time.monotonic()

    def open_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        """A socket connected to an allowed address of `host`."""
        self._start()
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as err:
            raise FetchError("network_error", f"cannot resolve {host}: {err.strerror}",
                             transient=True) from None
        refused, error = [], None
        for family, kind, proto, _, address in infos:
            public = is_public_address(address[0], port)
            if self.public_seen and not public:
                refused.append(address[0])
                continue
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(max(0.001, min(timeout, self.remaining())))
                sock.connect(address)
                sock.settimeout(timeout)
            except OSError as err:
                sock.close()
                error = err
                continue
            with self._lock:
                watched = sock.dup()
                self._watched.append(watched)
                if self.expired:
                    watched.shutdown(socket.SHUT_RDWR)
            self.public_seen = self.public_seen or public
            return sock
        if error is None:
            raise FetchError("redirect_refused", f"redirect from a public address to {host} "
                             f"({', '.join(refused)}), a non-public address")
        raise error


class _Connection(http.client.HTTPConnection):
    def __init__(self, host, port, timeout, exchange: _Exchange):
        super().__init__(host, port, timeout=timeout)
        self._exchange = exchange

    def connect(self):
        self.sock = self._exchange.open_socket(self.host, self.port, self.timeout)


class _TLSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, timeout, exchange: _Exchange, context):
        super().__init__(host, port, timeout=timeout, context=context)
        self._exchange = exchange

    def connect(self):
        sock = self._exchange.open_socket(self.host, self.port, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class Fetcher:
    """GETs http(s) URLs under `settings`; thread-safe, one per run.  `limiter` spaces the
    requests (None: no limit); `requests` counts every request made (hops and retries)."""

    def __init__(self, settings: FetchSettings = FetchSettings(),
                 limiter: RateLimiter | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings, self.limiter, self._sleep = settings, limiter, sleep
        self._tls = ssl.create_default_context()
        self._count_lock = threading.Lock()
        self.requests = 0

    def get(self, url: str, headers: Mapping[str, str] | None = None, *,
            max_bytes: int | None = None) -> FetchResult:
        """The whole body of `url` (retried as the settings say); raises FetchError."""
        s = self.settings
        _split(url)
        attempt = 0
        while True:
            attempt += 1
            try:
                body, ctype, final = self._attempt(url, dict(headers or {}),
                                                   max_bytes or s.max_bytes)
                return FetchResult(body, ctype, final, attempt)
            except FetchError as err:
                err.attempts = attempt
                if not err.transient or attempt > s.retries:
                    raise
                delay = s.backoff * 2 ** (attempt - 1) * (1 + 0.25 * random.random())
                if err.retry_after is not None:
                    delay = max(delay, min(err.retry_after, s.max_retry_after))
                self._sleep(delay)

    def _attempt(self, url: str, headers: dict, max_bytes: int) -> tuple[bytes, str, str]:
        exchange = _Exchange(self.settings.deadline)
        try:
            origin = None
            for _ in range(self.settings.max_redirects + 1):
                scheme, host, port, target = _split(requote(url))
                if origin is not None and origin != (scheme, host, port):
                    headers = {}  # the caller's headers are for the first origin only
                origin = (scheme, host, port)
                location = self._request(exchange, scheme, host, port, target, headers,
                                         max_bytes)
                if isinstance(location, tuple):
                    return (*location, url)
                url = urllib.parse.urljoin(url, location)
                if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
                    raise FetchError("redirect_refused", f"redirect to a non-http(s) URL: "
                                     f"{url}")
            raise FetchError("too_many_redirects",
                             f"more than {self.settings.max_redirects} redirects")
        finally:
            exchange.close()

    def _request(self, exchange, scheme, host, port, target, headers, max_bytes):
        """One request: (body, content type), or the Location of a redirect."""
        s = self.settings
        if self.limiter is not None:
            self.limiter.acquire(host)
        with self._count_lock:
            self.requests += 1
        if scheme == "https":
            conn = _TLSConnection(host, port, s.timeout, exchange, self._tls)
        else:
            conn = _Connection(host, port, s.timeout, exchange)
        try:
            conn.request("GET", target, headers={
                "User-Agent": s.user_agent, "Accept": "*/*", **headers})
            response = conn.getresponse()
            if response.status in REDIRECT_CODES and response.getheader("Location"):
                return response.getheader("Location")
            if response.status >= 300:
                code = response.status
                raise FetchError(f"http_{code}", f"HTTP {code} {response.reason}".strip(),
                                 status=code, transient=code in (408, 425, 429) or code >= 500,
                                 retry_after=parse_retry_after(response.getheader("Retry-After")))
            return self._read_body(exchange, response, max_bytes), \
                response.headers.get_content_type()
        except FetchError:
            raise
        except Exception as err:  # every way the exchange can break, told apart below
            raise self._explain(exchange, err) from None
        finally:
            conn.close()

    def _read_body(self, exchange, response, max_bytes) -> bytes:
        length = (response.getheader("Content-Length") or "").strip()
        expected = int(length) if length.isdigit() else None
        if expected is not None and expected > max_bytes:
            raise FetchError("too_large", f"{expected} bytes (over {max_bytes})")
        chunks, total = [], 0
        while True:
            if exchange.remaining() <= 0:
                break
            chunk = response.read1(READ_SIZE)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise FetchError("too_large", f"over {max_bytes} bytes")
            chunks.append(chunk)
        if exchange.expired or exchange.remaining() <= 0:
            raise self._deadline()
        if expected is not None and total < expected:
            raise FetchError("incomplete", f"got {total} of {expected} bytes", transient=True)
        return b"".join(chunks)

    def _deadline(self) -> FetchError:
        return FetchError("timeout", f"not done within the {self.settings.deadline:g} s "
                          "deadline", transient=True)

    def _explain(self, exchange, err: Exception) -> FetchError:
        if exchange.expired:
            return self._deadline()
        if isinstance(err, TimeoutError):
            return FetchError("timeout", f"no answer within {self.settings.timeout:g} s",
                              transient=True)
        if isinstance(err, http.client.IncompleteRead):
            return FetchError("incomplete", "the connection closed mid-body", transient=True)
        if isinstance(err, (http.client.InvalidURL, UnicodeError)):
            return FetchError("bad_url", str(err))
        if isinstance(err, ssl.SSLCertVerificationError):
            return FetchError("tls_error", str(err))
        if isinstance(err, (http.client.HTTPException, OSError, ValueError)):
            return FetchError("network_error", f"{type(err).__name__}: {err}", transient=True)
        raise err
