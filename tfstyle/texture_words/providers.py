"""Image collection for a texture word: providers, decoding, de-duplication.

A provider turns a word into candidate image files (:meth:`ImageProvider.candidates`);
:func:`collect_images` decodes them, drops what is not a usable image and drops duplicates.

* :class:`LocalFolderProvider` - images in ``ROOT/<word>/``.
* :class:`WebSearchProvider` - a web image-search API (Bing Image Search v7 or Google Custom
  Search JSON schemas) over ``urllib``; API key from an environment variable, every response and
  download cached on disk, a minimum interval between requests to the same host, HTTP 429/503
  honoured (``Retry-After``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from absl import logging
from PIL import Image

from tfstyle.core import images


@dataclasses.dataclass(frozen=True)
class WordImage:
    """One decoded image: ``pixels`` is ``[H, W, 3]`` uint8 RGB; ``source`` a path or URL."""

    source: str
    pixels: np.ndarray
    digest: str  # sha256 of the decoded pixels and their shape


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A file a provider offers for a word; ``source`` is shown to people (path or URL)."""

    path: Path
    source: str


class ImageProvider(Protocol):
    """Something that lists candidate image files for a word."""

    def candidates(self, word: str, limit: int) -> list[Candidate]:
        """Up to ``limit`` candidate files (more may be returned than end up usable)."""
        ...


# --------------------------------------------------------------------------------------------
# Decoding and de-duplication
# --------------------------------------------------------------------------------------------


def decode_image(path, min_side: int = 16) -> np.ndarray | None:
    """Decodes an image file to ``[H, W, 3]`` uint8 RGB, or None if it is not a usable image.

    Decoding is :func:`tfstyle.images.read_image` (EXIF orientation, alpha on white, first
    frame of animations, 16-bit scaled down).  Files it cannot read, decompression bombs and
    images with a side below ``min_side`` give None.
    """
    try:
        rgb = images.read_image(path)
    except (images.ImageError, Image.DecompressionBombError):
        return None
    if min(rgb.shape[:2]) < min_side:
        return None
    return rgb


def pixel_digest(pixels: np.ndarray) -> str:
    """sha256 over the shape and raw bytes of decoded pixels (same picture -> same digest,
    whatever the file name or lossless container)."""
    h = hashlib.sha256(repr(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def collect_images(
    provider: ImageProvider, word: str, limit: int = 30, min_side: int = 16
) -> list[WordImage]:
    """Up to ``limit`` distinct decoded images for ``word``.

    Non-images (undecodable, truncated, too small) and duplicates (same decoded pixels) are
    dropped with an INFO log line; order follows the provider.
    """
    out: list[WordImage] = []
    seen: set[str] = set()
    # Ask for more than needed: some candidates will be dropped.
    for cand in provider.candidates(word, limit=max(limit * 2, limit + 10)):
        if len(out) >= limit:
            break
        pixels = decode_image(cand.path, min_side=min_side)
        if pixels is None:
            logging.info("Skipping %s: not a usable image.", cand.source)
            continue
        digest = pixel_digest(pixels)
        if digest in seen:
            logging.info("Skipping %s: duplicate image.", cand.source)
            continue
        seen.add(digest)
        out.append(WordImage(source=cand.source, pixels=pixels, digest=digest))
    return out


# --------------------------------------------------------------------------------------------
# Local folder
# --------------------------------------------------------------------------------------------


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


class LocalFolderProvider:
    """Images of ``ROOT/<word>/`` (image files directly in it, by extension, sorted by name).

    The word folder is matched after Unicode NFC normalisation, so a folder named "ざらざら"
    in decomposed form (as macOS writes names) is found for the composed word.  If ``ROOT``
    itself is named after the word (``--images=DIR/<word>``) it is used directly.
    """

    def __init__(self, root):
        self.root = Path(root)

    def word_dir(self, word: str) -> Path:
        """The folder holding the images of ``word``; ``FileNotFoundError`` if there is none."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"Image folder not found: {self.root}")
        target = _nfc(word)
        direct = self.root / word
        if direct.is_dir():
            return direct
        for child in sorted(self.root.iterdir()):
            if child.is_dir() and _nfc(child.name) == target:
                return child
        if _nfc(self.root.name) == target:
            return self.root
        raise FileNotFoundError(
            f"No folder for the word {word!r}: expected {self.root / word}/ with its images."
        )

    def candidates(self, word: str, limit: int) -> list[Candidate]:
        files = images.list_images(self.word_dir(word))
        return [Candidate(path=p, source=str(p)) for p in files[:limit]]


# --------------------------------------------------------------------------------------------
# Web image search
# --------------------------------------------------------------------------------------------


class SearchAPIError(RuntimeError):
    """The image-search API could not be used (no key, HTTP error, unexpected answer)."""


@dataclasses.dataclass(frozen=True)
class SearchAPI:
    """How to ask one image-search API for a page of results and read the image URLs back."""

    name: str
    default_endpoint: str
    max_page_size: int
    build: Callable[[str, str, int, int, dict], tuple[str, dict]]
    parse: Callable[[dict], list[str]]
    extra_env: tuple[str, ...] = ()


def _bing_build(endpoint, word, offset, count, secrets):
    query = urllib.parse.urlencode({"q": word, "count": count, "offset": offset,
                                    "safeSearch": "Strict"})
    return f"{endpoint}?{query}", {"Ocp-Apim-Subscription-Key": secrets["key"]}


def _bing_parse(answer):
    return [item["contentUrl"] for item in answer.get("value", []) if item.get("contentUrl")]


def _google_build(endpoint, word, offset, count, secrets):
    query = urllib.parse.urlencode({"key": secrets["key"], "cx": secrets["TFSTYLE_SEARCH_CX"],
                                    "q": word, "searchType": "image", "num": count,
                                    "start": offset + 1, "safe": "active"})
    return f"{endpoint}?{query}", {}


def _google_parse(answer):
    return [item["link"] for item in answer.get("items", []) if item.get("link")]


#: Supported search APIs.  Bing Image Search v7 (what the seed used): header
#: ``Ocp-Apim-Subscription-Key``, parameters q/count/offset, results ``value[].contentUrl``.
#: Google Custom Search JSON API: parameters key/cx/q/searchType=image/num/start, results
#: ``items[].link``; the engine id comes from ``$TFSTYLE_SEARCH_CX``.
SEARCH_APIS: dict[str, SearchAPI] = {
    "bing": SearchAPI("bing", "https://api.bing.microsoft.com/v7.0/images/search", 150,
                      _bing_build, _bing_parse),
    "google": SearchAPI("google", "https://www.googleapis.com/customsearch/v1", 10,
                        _google_build, _google_parse, extra_env=("TFSTYLE_SEARCH_CX",)),
}


class _HostRateLimiter:
    """Keeps at least ``min_interval_s`` between the starts of two requests to one host."""

    def __init__(self, min_interval_s: float, clock=time.monotonic, sleep=time.sleep):
        self.min_interval_s = min_interval_s
        self._clock, self._sleep = clock, sleep
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, host: str) -> None:
        with self._lock:
            last = self._last.get(host)
            if last is not None:
                delay = last + self.min_interval_s - self._clock()
                if delay > 0:
                    self._sleep(delay)
            self._last[host] = self._clock()


class WebSearchProvider:
    """Image candidates from a web image-search API, cached under ``cache_dir``.

    Cache layout (nothing is fetched twice):
      ``search/<api>/<sha256(word)[:16]>/page-<offset>.json``  result URLs of one page
      ``images/<sha256(url)>.img``                             a downloaded image (raw bytes)
      ``images/<sha256(url)>.failed``                          a URL that answered 4xx, is not
                                                               http(s), or is too large
    Network errors other than 4xx are not cached (retried next run).

    Args:
      cache_dir: cache folder (created).
      api: a key of :data:`SEARCH_APIS`.
      endpoint: API URL; default the API's public one.
      api_key_env: environment variable holding the key (read when searching, never logged).
      min_interval_s: minimum seconds between requests to the same host.
      timeout_s: per-request timeout.
      max_image_bytes: larger downloads are dropped.
      max_retries: retries on HTTP 429/503 and network errors, waiting ``Retry-After`` seconds
        (capped at ``max_wait_s``) or 1, 2, 4, ... seconds.
    """

    def __init__(
        self,
        cache_dir,
        api: str = "bing",
        endpoint: str | None = None,
        api_key_env: str = "TFSTYLE_SEARCH_API_KEY",
        min_interval_s: float = 1.0,
        timeout_s: float = 20.0,
        max_image_bytes: int = 20 * 1024 * 1024,
        max_retries: int = 3,
        max_wait_s: float = 60.0,
        user_agent: str = "tfstyle-texture/0.1",
        sleep: Callable[[float], None] = time.sleep,
    ):
        if api not in SEARCH_APIS:
            raise ValueError(f"Unknown search API {api!r}; choose from {sorted(SEARCH_APIS)}.")
        self.api = SEARCH_APIS[api]
        self.endpoint = endpoint or self.api.default_endpoint
        self.api_key_env = api_key_env
        self.cache_dir = Path(cache_dir)
        self.timeout_s = timeout_s
        self.max_image_bytes = max_image_bytes
        self.max_retries = max_retries
        self.max_wait_s = max_wait_s
        self.user_agent = user_agent
        self._sleep = sleep
        self._limiter = _HostRateLimiter(min_interval_s, sleep=sleep)
        self.requests_made = 0

    # -- HTTP ----------------------------------------------------------------------------------

    def _get(self, url: str, headers: dict, max_bytes: int) -> bytes:
        """GET with rate limiting and retries; raises urllib errors / SearchAPIError."""
        host = urllib.parse.urlsplit(url).netloc
        attempt = 0
        while True:
            self._limiter.wait(host)
            request = urllib.request.Request(url, headers={"User-Agent": self.user_agent,
                                                           **headers})
            self.requests_made += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    body = response.read(max_bytes + 1)
                if len(body) > max_bytes:
                    raise SearchAPIError(f"{url}: larger than {max_bytes} bytes")
                return body
            except urllib.error.HTTPError as err:
                if err.code not in (429, 503) or attempt >= self.max_retries:
                    raise
                wait = self._retry_after(err.headers.get("Retry-After"), attempt)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if attempt >= self.max_retries:
                    raise
                wait = float(2**attempt)
                logging.info("Request failed (%s); retrying in %.1f s", err, wait)
            attempt += 1
            self._sleep(wait)

    def _retry_after(self, value, attempt: int) -> float:
        try:
            wait = float(value)
        except (TypeError, ValueError):
            wait = float(2**attempt)
        return min(max(wait, 0.0), self.max_wait_s)

    # -- search --------------------------------------------------------------------------------

    def _secrets(self) -> dict:
        key = os.environ.get(self.api_key_env)
        if not key:
            raise SearchAPIError(
                f"The {self.api.name} image search needs an API key in the environment "
                f"variable {self.api_key_env}."
            )
        secrets = {"key": key}
        for name in self.api.extra_env:
            if not os.environ.get(name):
                raise SearchAPIError(f"The {self.api.name} image search needs ${name}.")
            secrets[name] = os.environ[name]
        return secrets

    def _word_cache(self, word: str) -> Path:
        digest = hashlib.sha256(_nfc(word).encode("utf8")).hexdigest()[:16]
        return self.cache_dir / "search" / self.api.name / digest

    def search(self, word: str, limit: int) -> list[str]:
        """Up to ``limit`` image URLs for ``word`` (cached per result page)."""
        urls: list[str] = []
        page_dir = self._word_cache(word)
        offset = 0
        secrets = None
        while len(urls) < limit:
            count = min(self.api.max_page_size, limit - len(urls))
            page_file = page_dir / f"page-{offset}-{count}.json"
            if page_file.is_file():
                page = json.loads(page_file.read_text("utf8"))["urls"]
            else:
                secrets = secrets or self._secrets()
                url, headers = self.api.build(self.endpoint, word, offset, count, secrets)
                try:
                    body = self._get(url, headers, max_bytes=16 * 1024 * 1024)
                    answer = json.loads(body.decode("utf8"))
                except urllib.error.HTTPError as err:
                    raise SearchAPIError(
                        f"{self.api.name} image search failed for {word!r}: HTTP {err.code} "
                        f"{err.reason}"
                    ) from err
                except (ValueError, urllib.error.URLError, OSError) as err:
                    raise SearchAPIError(
                        f"{self.api.name} image search failed for {word!r}: {err}"
                    ) from err
                page = self.api.parse(answer)
                page_dir.mkdir(parents=True, exist_ok=True)
                tmp = page_file.with_suffix(".tmp")
                tmp.write_text(json.dumps({"word": word, "offset": offset, "urls": page},
                                          ensure_ascii=False), "utf8")
                tmp.replace(page_file)
            urls.extend(page)
            if len(page) < count:  # no more results
                break
            offset += len(page)
        return urls[:limit]

    # -- downloads -----------------------------------------------------------------------------

    def download(self, url: str) -> Path | None:
        """The cached file for ``url``, downloading it first if needed; None if unavailable."""
        stem = hashlib.sha256(url.encode("utf8")).hexdigest()
        image_dir = self.cache_dir / "images"
        path, failed = image_dir / f"{stem}.img", image_dir / f"{stem}.failed"
        if path.is_file():
            return path
        if failed.is_file():
            return None
        image_dir.mkdir(parents=True, exist_ok=True)
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            failed.write_text(f"{url}\nnot an http(s) URL\n", "utf8")
            return None
        try:
            body = self._get(url, {}, max_bytes=self.max_image_bytes)
        except urllib.error.HTTPError as err:
            logging.info("Download of %s failed: HTTP %s", url, err.code)
            if 400 <= err.code < 500:
                failed.write_text(f"{url}\nHTTP {err.code}\n", "utf8")
            return None
        except SearchAPIError as err:
            logging.info("Download of %s dropped: %s", url, err)
            failed.write_text(f"{url}\n{err}\n", "utf8")
            return None
        except (urllib.error.URLError, OSError) as err:
            logging.info("Download of %s failed: %s", url, err)
            return None
        tmp = path.with_suffix(".part")
        tmp.write_bytes(body)
        tmp.replace(path)
        return path

    def candidates(self, word: str, limit: int) -> list[Candidate]:
        out = []
        for url in self.search(word, limit):
            path = self.download(url)
            if path is not None:
                out.append(Candidate(path=path, source=url))
        return out

