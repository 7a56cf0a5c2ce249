"""Image collection for a texture word: providers, decoding, de-duplication.

A provider turns a word into candidate image files (:meth:`ImageProvider.candidates`);
:func:`collect_images` decodes them, drops what is not a usable image and drops duplicates.

* :class:`LocalFolderProvider` - images in ``ROOT/<word>/``.
* :class:`WebSearchProvider` - a web image-search API (Bing Image Search v7 or Google Custom
  Search JSON schemas) through the package's fetcher (:mod:`tfstyle.core.fetch`); API key from
  an environment variable, every response and download cached on disk, a minimum interval
  between requests to the same host, ``Retry-After`` honoured (:class:`WebSearchSettings`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import unicodedata
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from absl import logging
from PIL import Image

from tfstyle.core import images
from tfstyle.core.config import Config, setting
from tfstyle.core.fetch import Fetcher, FetchError, FetchSettings, RateLimiter
from tfstyle.core.files import write_bytes_atomic, write_text_atomic

#: Largest search-API answer read (bytes).
SEARCH_PAGE_BYTES = 16 * 1024 * 1024


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

    Decoding is :func:`tfstyle.core.images.read_image` (EXIF orientation, alpha on white, first
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


@dataclasses.dataclass(frozen=True)
class WebSearchSettings(Config):
    """Settings of :class:`WebSearchProvider` (flags of ``python -m tfstyle.texture``)."""

    search_api: str = setting("bing", "Web search API schema.", choices=SEARCH_APIS)
    search_endpoint: str = setting("", "Web search API URL (default: the API's own).")
    api_key_env: str = setting("TFSTYLE_SEARCH_API_KEY", "Environment variable holding the "
                               "web search API key.")
    cache_dir: str = setting(os.path.join("~", ".cache", "tfstyle", "image_search"),
                             "Cache of web search results and downloads.")
    request_interval: float = setting(1.0, "Minimum seconds between web requests to a host.",
                                      min=0)
    request_timeout: float = setting(20.0, "Seconds for connecting and for each read of a web "
                                     "request; a whole request, redirects included, is "
                                     "abandoned after 5x this.", above=0)
    max_download_bytes: int = setting(20 * 1024 * 1024, "Largest image download accepted "
                                      "(bytes); larger ones are dropped.", min=1)
    request_retries: int = setting(3, "Retries of a web request after HTTP 408/425/429/5xx "
                                   "or a network error (waiting Retry-After, at most 60 s).",
                                   min=0, max=20)
    user_agent: str = setting("tfstyle-texture/0.1", "User-Agent of the web requests.",
                              flag=False)

    def validate(self):
        self.need(self.api_key_env.strip(), "api_key_env", "must name a variable")

    def fetch_settings(self) -> FetchSettings:
        return FetchSettings(timeout=self.request_timeout, deadline=5 * self.request_timeout,
                             retries=self.request_retries, max_bytes=self.max_download_bytes,
                             user_agent=self.user_agent)


class WebSearchProvider:
    """Image candidates from a web image-search API, cached under ``settings.cache_dir``.

    Cache layout (nothing is fetched twice):
      ``search/<api>/<sha256(word)[:16]>/page-<offset>.json``  result URLs of one page
      ``images/<sha256(url)>.img``                             a downloaded image (raw bytes)
      ``images/<sha256(url)>.failed``                          a URL that failed for good (4xx,
                                                               not http(s), too large, a
                                                               refused redirect)
    Transient failures (timeouts, network errors, 5xx) are not cached (retried next run).

    Every request goes through the package's fetcher (:mod:`tfstyle.core.fetch`): http(s)
    only at every hop, no redirect from a public address into the local network, at most 5
    redirects, a deadline per request, ``max_download_bytes``, at least ``request_interval``
    seconds between two requests to one host, retries honouring ``Retry-After``.  The API key
    (read from ``$<api_key_env>`` when searching, never logged) is not sent on to another host
    by a redirect.  ``sleep`` and ``clock`` are for tests.
    """

    def __init__(self, settings: WebSearchSettings = WebSearchSettings(), *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.api = SEARCH_APIS[settings.search_api]
        self.endpoint = settings.search_endpoint or self.api.default_endpoint
        self.cache_dir = Path(settings.cache_dir).expanduser()
        self.fetcher = Fetcher(settings.fetch_settings(),
                               limiter=RateLimiter(settings.request_interval, clock=clock,
                                                   sleep=sleep),
                               sleep=sleep)

    @property
    def requests_made(self) -> int:
        return self.fetcher.requests

    # -- search --------------------------------------------------------------------------------

    def _secrets(self) -> dict:
        key = os.environ.get(self.settings.api_key_env)
        if not key:
            raise SearchAPIError(
                f"The {self.api.name} image search needs an API key in the environment "
                f"variable {self.settings.api_key_env}."
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
                    body = self.fetcher.get(url, headers, max_bytes=SEARCH_PAGE_BYTES).body
                    page = [u for u in self.api.parse(json.loads(body.decode("utf8")))
                            if isinstance(u, str)]
                except (FetchError, ValueError, TypeError, KeyError, AttributeError,
                        RecursionError) as err:
                    detail = err.detail if isinstance(err, FetchError) else \
                        f"unexpected answer ({type(err).__name__}: {err})"
                    raise SearchAPIError(
                        f"{self.api.name} image search failed for {word!r}: {detail}"
                    ) from None
                write_text_atomic(page_file, json.dumps(
                    {"word": word, "offset": offset, "urls": page}, ensure_ascii=False))
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
        try:
            body = self.fetcher.get(url, max_bytes=self.settings.max_download_bytes).body
        except FetchError as err:
            logging.info("Download of %s failed: %s", url, err)
            if not err.transient:
                write_text_atomic(failed, f"{url}\n{err}\n")
            return None
        write_bytes_atomic(path, body)
        return path

    def candidates(self, word: str, limit: int) -> list[Candidate]:
        out = []
        for url in self.search(word, limit):
            path = self.download(url)
            if path is not None:
                out.append(Candidate(path=path, source=url))
        return out

