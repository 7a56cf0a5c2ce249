"""Getting the bytes of one BAM image: from a local mirror of the images, or over HTTP(S)
through the package's fetcher (:mod:`tfstyle.core.fetch`: http/https only at every hop, no
redirect from a public address into the local network, bounded redirects, a deadline per
download, a size limit, retries) with one rate limit shared by all workers and a budget of
downloads per run."""

from __future__ import annotations

import dataclasses
import pathlib
import threading
import urllib.parse

from tfstyle.bam.select import RankedImage
from tfstyle.core.config import Config, setting
from tfstyle.core.fetch import Fetcher, FetchError, FetchSettings, RateLimiter

DEFAULT_USER_AGENT = (
    "tfstyle-bam-domains/0.1 (research dataset builder; Python http.client)")
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: A download is abandoned when it takes longer than this many timeouts in
#: total, even when every single read came in time (a trickling server).
TOTAL_TIMEOUT_FACTOR = 5.0

_MIRROR_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp",
                      ".JPG", ".JPEG", ".PNG", "")


@dataclasses.dataclass(frozen=True)
class DownloadOptions(Config):
    """How images are obtained (every field is a flag of ``train.bam_domains``)."""
    workers: int = setting(4, "Concurrent downloads.", min=1, max=256)
    rate: float = setting(5.0, "Most HTTP requests per second over all workers, redirects "
                          "and retries included (0: no limit).", min=0)
    timeout: float = setting(
        20.0, "Seconds allowed for connecting and for each read; a whole download (its "
        f"redirects included) is abandoned after {TOTAL_TIMEOUT_FACTOR:g}x this.", above=0)
    retries: int = setting(3, "Extra attempts after a transient failure (timeout, network "
                           "error, HTTP 408/425/429/5xx).", min=0, max=20)
    backoff: float = setting(1.0, "Seconds before the first retry; doubles for each further "
                             "retry.", min=0, max=600)
    user_agent: str = setting(DEFAULT_USER_AGENT, "User-Agent header of the requests.")
    max_bytes: int = setting(DEFAULT_MAX_BYTES, "Largest image download accepted, in bytes; "
                             "larger ones are skipped as too_large.", min=1)
    max_redirects: int = setting(5, "Redirects followed per download at most.", min=0, max=20)
    max_downloads: int = setting(0, "Stop after this many HTTP downloads; a later run "
                                 "continues (0: no limit).", min=0)
    retry_skipped: bool = setting(False, "Ask again for links an earlier run found dead for "
                                  "good (404, not an image, ...).")
    progress_every: int = setting(50, "Log a progress line after this many images.", min=1)
    checkpoint_every: int = setting(100, "Rewrite manifest.csv after this many images.",
                                    min=1)

    def validate(self):
        self.need(self.user_agent.strip(), "user_agent", "must not be blank")

    def fetch_settings(self) -> FetchSettings:
        return FetchSettings(
            timeout=self.timeout, deadline=self.timeout * TOTAL_TIMEOUT_FACTOR,
            retries=self.retries, backoff=self.backoff, max_bytes=self.max_bytes,
            max_redirects=self.max_redirects, user_agent=self.user_agent)


class Unavailable(Exception):
    """An image that cannot be obtained: ``reason`` (the manifest's), ``detail``, and the
    ``origin`` that was tried (``url`` or ``mirror``)."""

    def __init__(self, origin: str, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.origin, self.reason, self.detail = origin, reason, detail


class BudgetSpent(Exception):
    """The run has started as many downloads as ``max_downloads`` allows."""


class Downloader:
    """Gets image bytes for a run: from ``image_root`` when given (nothing is downloaded
    then), else from the image's ``src`` URL.  Thread-safe; ``requests`` counts the HTTP
    requests made."""

    def __init__(self, options: DownloadOptions, image_root: pathlib.Path | None = None):
        self.image_root = image_root
        interval = 1.0 / options.rate if options.rate > 0 else 0.0
        self.fetcher = Fetcher(options.fetch_settings(),
                               limiter=RateLimiter(interval, per_host=False))
        self._left = options.max_downloads or None
        self._lock = threading.Lock()

    @property
    def requests(self) -> int:
        return self.fetcher.requests

    def _take_budget(self) -> None:
        if self._left is None:
            return
        with self._lock:
            if self._left <= 0:
                raise BudgetSpent
            self._left -= 1

    def get(self, image: RankedImage) -> tuple[bytes, str, str]:
        """(body, origin, Content-Type) of ``image``; origin is ``mirror`` or ``url``.
        Raises Unavailable, or BudgetSpent before a download the budget does not allow."""
        if self.image_root is not None:
            path = find_in_mirror(self.image_root, image.mid, image.src)
            if path is None:
                raise Unavailable("mirror", "missing_local", f"not in {self.image_root}")
            try:
                return path.read_bytes(), "mirror", ""
            except OSError as err:
                raise Unavailable("mirror", "missing_local",
                                  f"cannot read {path}: {err}") from None
        if not image.src:
            raise Unavailable("url", "no_url", "modules.src is empty")
        self._take_budget()
        try:
            result = self.fetcher.get(image.src, {"Accept": "image/*, */*;q=0.1"})
        except FetchError as err:
            plural = "s" if err.attempts != 1 else ""
            raise Unavailable("url", err.reason,
                              f"{err.detail} ({err.attempts} attempt{plural})") from None
        return result.body, "url", result.content_type


def find_in_mirror(root: pathlib.Path, mid: int,
                   src: str | None) -> pathlib.Path | None:
    """Looks an image up in a local mirror of the BAM images.

    Tried in order: ``ROOT/<mid>`` with the extensions .jpg .jpeg .png .gif
    .webp .bmp (also upper-case) or none; then the URL's path under
    ``ROOT/<host>/`` (the layout of ``wget -x``), under ``ROOT/``, and its
    file name alone.  Paths from the URL never leave ROOT.
    """
    for ext in _MIRROR_EXTENSIONS:
        path = root / f"{mid}{ext}"
        if path.is_file():
            return path
    if not src:
        return None
    parts = urllib.parse.urlsplit(src)
    segments = [s for s in urllib.parse.unquote(parts.path).split("/") if s]
    if not segments or any(s in (".", "..") or "\\" in s for s in segments):
        return None
    host = parts.hostname or ""
    options = []
    if host and host not in (".", ".."):
        options.append(root.joinpath(host, *segments))
    options += [root.joinpath(*segments), root / segments[-1]]
    for path in options:
        if path.is_file():
            return path
    return None
