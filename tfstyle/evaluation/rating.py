"""The rating study in a browser: a small web app (WSGI) and its server.

It serves a study folder (`evaluation.studies`: the caricature study of an evaluation report,
or the texture seed's word study) to raters and stores every answer at once
(`evaluation.answers`). Pages are plain server-rendered HTML forms, no JavaScript:

* `/`        the start page: the study's instructions and a form for the rater id;
* `/rate`    the rater's next item (the images and the question; the models anonymous);
* `/answer`  (POST) one answer, then on to the next item; `/image/ITEM/KIND` the images, by
  opaque item id, so neither page nor URL names a model.

Forged answers are refused. A rater is a session: POST /start claims the rater id for a
random session token that the app issues in an HttpOnly, SameSite=Strict cookie (only its
hash is stored; an id held by another session is refused), and every answer is stored under
the session's rater, never under a rater named in the form. Every POST must carry the
form's CSRF token (an HMAC of the session token, so only pages this app served to this
browser have it) and come from this server's own origin (the Origin header, or the Referer
when a browser sends no Origin; neither: refused). A refused request stores nothing.

The server is waitress (a WSGI server that reads whole requests asynchronously before a worker
thread sees them): a connection that stays silent for `timeout` seconds, e.g. one that
announced a body and stalled, is dropped; at most `max_connections` are open at once (more
wait in the listen `backlog`), `threads` answer requests, and requests are bounded in size.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import mimetypes
import re
import secrets
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, quote, urlsplit

from tfstyle.core.config import Config, setting
from tfstyle.evaluation.answers import TOKEN_PATTERN, RaterTakenError, RatingStore, check_rater
from tfstyle.evaluation.studies import (
    QUESTIONS,
    SCALE,
    SCORES,
    WORD_QUESTION,
    Item,
    Manifest,
    RatingError,
    load_manifest,
    model_labels,
    rater_order,
    word_choices,
)

#: Largest form body and header block a request may send (bytes).
MAX_BODY = 4096
MAX_HEADER = 16384
COOKIE = "tfstyle_rating"
COOKIE_MAX_AGE = 30 * 24 * 3600


@dataclass
class RatingSettings(Config):
    """Settings of the rating app and its server; `python -m tfstyle.rate` has a flag each."""
    host: str = setting("127.0.0.1", "Address to listen on (0.0.0.0: the whole network).")
    port: int = setting(8080, "Port to listen on (0: any free port).", min=0, max=65535)
    direction: str = setting("AtoB", "Which outputs of a translation study to rate: AtoB "
                             "(photo -> caricature, the only ones the caricature seed "
                             "rated), BtoA or both.", choices=("AtoB", "BtoA", "both"))
    question_train: str = setting("", "Question shown for train images (default: the "
                                  "caricature seed's, similarity to the illustrator's "
                                  "drawing).")
    question_test: str = setting("", "Question shown for test images (default: the "
                                 "caricature seed's, completeness as a caricature).")
    show_input: bool = setting(False, "Also show the input image beside every output (the "
                               "seed showed train outputs beside the illustrator's drawing "
                               "and test outputs alone).")
    choices: int = setting(0, "Word study: candidate words offered per image, the right one "
                           "among them (0: every word of the study, the seed's answer "
                           "sheet).", min=0)
    threads: int = setting(8, "Worker threads answering requests.", min=1, max=256)
    max_connections: int = setting(256, "Connections open at once at most; more wait in the "
                                   "listen backlog.", min=8)
    backlog: int = setting(1024, "Listen backlog: connections the system holds while the "
                           "server is busy (a classroom answering at once).", min=128)
    timeout: int = setting(5, "Seconds a connection may stay silent (a request that "
                           "announced a body and stalled, an idle keep-alive) before it is "
                           "dropped.", min=1)

    def validate(self):
        self.need(self.choices != 1, "choices", "must be 0 (every word) or at least 2")

    @property
    def directions(self) -> tuple[str, ...]:
        return ("AtoB", "BtoA") if self.direction == "both" else (self.direction,)


# ------------------------------------------------------------------------------------------
# Requests and replies
# ------------------------------------------------------------------------------------------


class _Refused(Exception):
    """Answer the request with `status` and an error page saying `message`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    extra: tuple = ()

    def headers(self) -> list[tuple[str, str]]:
        return [("Content-Type", self.content_type), ("Content-Length", str(len(self.body))),
                ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "same-origin"),
                ("Content-Security-Policy", "default-src 'none'; img-src 'self'; "
                 "style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
                *self.extra]


def _redirect(location: str, *extra) -> _Reply:
    return _Reply(303, b"", extra=(("Location", location), *extra))


def _cookie_header(token: str) -> tuple[str, str]:
    return ("Set-Cookie", f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; "
                          f"Max-Age={COOKIE_MAX_AGE}")


def csrf_token(session_token: str) -> str:
    """The CSRF token of the forms served to the holder of `session_token`."""
    return hmac.new(session_token.encode("ascii"), b"tfstyle-rating-form",
                    hashlib.sha256).hexdigest()


def same_origin(environ) -> bool:
    """Whether a request comes from a page of this server: its Origin header (else its
    Referer's scheme and host) is this server's scheme://Host."""
    own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}".lower()
    origin = environ.get("HTTP_ORIGIN")
    if origin is None and environ.get("HTTP_REFERER"):
        referer = urlsplit(environ["HTTP_REFERER"])
        origin = f"{referer.scheme}://{referer.netloc}"
    return origin is not None and origin.lower() == own


class _Request:
    def __init__(self, environ):
        self.environ = environ
        self.method = environ["REQUEST_METHOD"]
        self.path = environ.get("PATH_INFO", "") or "/"
        cookie = SimpleCookie()
        try:
            cookie.load(environ.get("HTTP_COOKIE", ""))
        except CookieError:  # a malformed cookie header counts as none
            cookie = SimpleCookie()
        value = cookie[COOKIE].value if COOKIE in cookie else ""
        self.token = value if TOKEN_PATTERN.match(value) else None

    def form(self) -> dict[str, list[str]]:
        """The url-encoded form in the body (bounded in size)."""
        if "application/x-www-form-urlencoded" not in self.environ.get("CONTENT_TYPE", ""):
            raise _Refused(415, "send the form as application/x-www-form-urlencoded")
        try:
            length = int(self.environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            raise _Refused(411, "Content-Length required") from None
        if not 0 <= length <= MAX_BODY:
            raise _Refused(413, "form too large")
        body = self.environ["wsgi.input"].read(length)
        try:
            return parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise _Refused(400, "the form is not UTF-8") from None


def _one(form: dict, name: str) -> str:
    values = form.get(name, [])
    if len(values) != 1:
        raise RatingError(f"the form needs exactly one '{name}'")
    return values[0].strip()


# ------------------------------------------------------------------------------------------
# The app
# ------------------------------------------------------------------------------------------

_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
.images { display: flex; gap: 1.5em; flex-wrap: wrap; align-items: flex-start; }
figure { margin: 0; text-align: center; }
figure img { width: 256px; height: auto; border: 1px solid #ccc; }
fieldset { margin-top: 1.5em; border: 1px solid #aaa; }
label { display: inline-block; margin: 0.3em 1em 0.3em 0; }
button { margin-top: 1em; font-size: 1.1em; padding: 0.3em 1.5em; }
.error { color: #a00; }
"""


def _page(title: str, body: str) -> bytes:
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"{body}</body></html>").encode("utf-8")


def _signed(score: int) -> str:
    return f"{score:+d}" if score else "0"


class RatingApp:
    """The WSGI application of one study: `manifest`'s items, answers in `store`."""

    def __init__(self, manifest: Manifest, store: RatingStore,
                 settings: RatingSettings | None = None):
        self.manifest, self.store = manifest, store
        self.settings = settings or RatingSettings()
        self.questions = {split: getattr(self.settings, f"question_{split}") or question
                          for split, question in QUESTIONS.items()}
        self._lock = threading.Lock()
        self._orders: dict[str, list[str]] = {}

    # ---- the study

    def order(self, rater: str) -> list[str]:
        with self._lock:
            if rater not in self._orders:
                self._orders[rater] = rater_order(rater, self.manifest.items)
            return self._orders[rater]

    def next_item(self, rater: str):
        """(next unanswered item or None, answered so far, total) for `rater`."""
        done = self.store.answered(rater) & self.manifest.items.keys()
        order = self.order(rater)
        for item_id in order:
            if item_id not in done:
                return self.manifest.items[item_id], len(done), len(order)
        return None, len(done), len(order)

    def choices(self, rater: str, item) -> list[str]:
        """The candidate words `rater` is offered for a word-study item."""
        return word_choices(rater, item, self.manifest.words, self.settings.choices)

    def answer(self, rater: str, form: dict[str, list[str]]) -> int:
        """Validate and store `rater`'s submitted form; the row id, or RatingError."""
        item_id = _one(form, "item")
        item = self.manifest.items.get(item_id)
        if item is None:
            raise RatingError(f"unknown item {item_id!r}")
        if self.manifest.kind == "words":
            return self.store.add_choice(rater, item, _one(form, "choice"),
                                         self.choices(rater, item))
        score = _one(form, "score")
        if not re.fullmatch(r"[+-]?\d{1,2}", score) or int(score) not in SCORES:
            raise RatingError(f"score must be an integer from -2 to 2, got {score!r}")
        return self.store.add(rater, item, int(score))

    # ---- WSGI

    def __call__(self, environ, start_response):
        request = _Request(environ)
        try:
            reply = self._route(request)
        except _Refused as refused:
            reply = _Reply(refused.status, self.error_page(refused.status, str(refused)))
        start_response(f"{reply.status} {HTTPStatus(reply.status).phrase}", reply.headers())
        return [reply.body]

    def _route(self, request: _Request) -> _Reply:
        path = request.path
        if request.method in ("GET", "HEAD"):
            if path == "/":
                return self._start_page(request)
            if path == "/rate":
                return self._next(request)
            if path.startswith("/image/"):
                return self._image(path)
        elif request.method == "POST" and path in ("/start", "/answer"):
            form = request.form()
            self._check_forgery(request, form)
            return self._start(request, form) if path == "/start" else \
                self._answer(request, form)
        elif request.method != "POST":
            raise _Refused(405, f"method {request.method} not allowed")
        raise _Refused(404, f"no page {path}")

    def _check_forgery(self, request: _Request, form) -> None:
        if not same_origin(request.environ):
            raise _Refused(403, "refused: the form was not sent from a page of this study "
                                "(Origin/Referer of another site, or none)")
        sent = form.get("csrf", [""])
        if request.token is None or len(sent) != 1 or not hmac.compare_digest(
                sent[0].encode(), csrf_token(request.token).encode()):
            raise _Refused(403, "refused: the form has expired or was not made by this study "
                                "for this browser; open the start page again")

    def _start_page(self, request: _Request) -> _Reply:
        token, extra = request.token, ()
        if token is None:  # an anonymous session, so the start form carries a token
            token = secrets.token_urlsafe(32)
            extra = (_cookie_header(token),)
        return _Reply(200, self.start_page(csrf_token(token), self.store.session_rater(token)),
                      extra=extra)

    def _start(self, request: _Request, form) -> _Reply:
        try:
            rater = check_rater(_one(form, "rater"))
        except RatingError as err:
            raise _Refused(400, str(err)) from None
        if self.store.session_rater(request.token) == rater:
            return _redirect("/rate")
        try:
            token = self.store.start_session(rater)
        except RaterTakenError as err:
            raise _Refused(409, str(err)) from None
        return _redirect("/rate", _cookie_header(token))

    def _next(self, request: _Request) -> _Reply:
        rater = self.store.session_rater(request.token)
        if rater is None:
            return _redirect("/")
        item, done, total = self.next_item(rater)
        if item is None:
            return _Reply(200, self.done_page(rater, total))
        csrf = csrf_token(request.token)
        page = (self.word_page(rater, item, done, total, csrf)
                if self.manifest.kind == "words"
                else self.item_page(rater, item, done, total, csrf))
        return _Reply(200, page)

    def _answer(self, request: _Request, form) -> _Reply:
        rater = self.store.session_rater(request.token)
        if rater is None:
            raise _Refused(403, "refused: no rating session; start on the start page")
        try:
            self.answer(rater, form)
        except RatingError as err:
            raise _Refused(400, str(err)) from None
        return _redirect("/rate")

    def _image(self, path: str) -> _Reply:
        parts = path.split("/")
        item = self.manifest.items.get(parts[2]) if len(parts) == 4 else None
        kind = parts[3] if item else ""
        relative = getattr(item, kind, None) if kind in ("input", "output", "target",
                                                         "image") else None
        if not isinstance(relative, str):
            raise _Refused(404, "no such image")
        try:
            file = self.manifest.path(relative)
            data = file.read_bytes()
        except (RatingError, OSError):
            raise _Refused(404, "image file missing from the study") from None
        return _Reply(200, data, mimetypes.guess_type(file.name)[0] or "application/octet-stream")

    # ---- pages

    def start_page(self, csrf: str, rater: str | None) -> bytes:
        esc, total = html.escape, len(self.manifest.items)
        if self.manifest.kind == "words":
            intro = (f"<p>You will see {total} stylized images, one at a time. Each was made "
                     "to show the texture of one word. Pick the word you think it shows.</p>")
        else:
            scale = "".join(f"<li><b>{_signed(s)}</b> {esc(label)} ({esc(seed)})</li>"
                            for s, label, seed in SCALE)
            intro = (f"<p>You will see {total} generated images, one at a time, from "
                     "anonymous systems in a random order. Rate each on this scale:</p>"
                     f"<ul>{scale}</ul>")
        resume = (f"<p>You are rater <b>{esc(rater)}</b>: <a href='/rate'>continue</a>.</p>"
                  if rater else "")
        body = ("<h1>Rating study</h1>" + intro + resume
                + "<form method='post' action='/start'>"
                f"<input type='hidden' name='csrf' value='{esc(csrf)}'>"
                "<label>Your rater id (letters, digits, . _ @ -): <input name='rater' "
                "required maxlength='64' pattern='[A-Za-z0-9_.@-]{1,64}'></label> "
                "<button type='submit'>Start</button></form>"
                "<p>Your answers are saved as you go; come back in this browser to "
                "continue.</p>")
        return _page("Rating study", body)

    def _form(self, item_id: str, csrf: str, legend: str, radios: str) -> str:
        esc = html.escape
        return ("<form method='post' action='/answer'>"
                f"<input type='hidden' name='csrf' value='{esc(csrf)}'>"
                f"<input type='hidden' name='item' value='{esc(item_id)}'>"
                f"<fieldset><legend>{esc(legend)}</legend>{radios}</fieldset>"
                "<button type='submit'>Save and next</button></form>")

    def _header(self, rater: str, done: int, total: int) -> str:
        return (f"<p>Rater <b>{html.escape(rater)}</b> &middot; item {done + 1} of {total} "
                "&middot; <a href='/'>start page</a></p>")

    def item_page(self, rater: str, item: Item, done: int, total: int, csrf: str) -> bytes:
        """A translation output: train ones beside the illustrator's drawing (the input
        where there is none), test ones alone, as the seed showed them."""
        esc = html.escape
        label = model_labels(rater, self.manifest.models)[item.model]
        figures = []
        if self.settings.show_input or (item.split == "train" and not item.target):
            figures.append(("input", "Input"))
        if item.split == "train" and item.target:
            figures.append(("target", "The illustrator's drawing" if item.direction == "AtoB"
                            else "The target image"))
        figures.append(("output", f"Generated by {label}"))
        images = "".join(
            f"<figure><img src='/image/{quote(item.id)}/{kind}' alt='{esc(caption)}'>"
            f"<figcaption>{esc(caption)}</figcaption></figure>" for kind, caption in figures)
        radios = "".join(
            f"<label><input type='radio' name='score' value='{s}' required> {_signed(s)} "
            f"{esc(text)} ({esc(seed)})</label>" for s, text, seed in SCALE)
        body = (self._header(rater, done, total)
                + f"<h2>{esc(self.questions[item.split])}</h2>"
                f"<div class='images'>{images}</div>"
                + self._form(item.id, csrf, f"Your rating of {label}", radios))
        return _page(f"Rating {done + 1}/{total}", body)

    def word_page(self, rater: str, item, done: int, total: int, csrf: str) -> bytes:
        esc = html.escape
        radios = "".join(
            f"<label><input type='radio' name='choice' value='{esc(word)}' required> "
            f"{esc(word)}</label>" for word in self.choices(rater, item))
        body = (self._header(rater, done, total) + f"<h2>{esc(WORD_QUESTION)}</h2>"
                f"<div class='images'><figure><img src='/image/{quote(item.id)}/image' "
                "alt='stylized image'></figure></div>"
                + self._form(item.id, csrf, "The texture word", radios))
        return _page(f"Word {done + 1}/{total}", body)

    def done_page(self, rater: str, total: int) -> bytes:
        return _page("Thank you", f"<h1>Thank you, {html.escape(rater)}!</h1><p>You answered "
                     f"all {total} items. Your answers are saved.</p>"
                     "<p><a href='/'>start page</a></p>")

    def error_page(self, status: int, message: str) -> bytes:
        return _page("Error", f"<h1>{status} {HTTPStatus(status).phrase}</h1>"
                     f"<p class='error'>{html.escape(message)}</p>"
                     "<p><a href='/'>start page</a></p>")


# ------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------


class RatingServer:
    """`app` behind waitress, bounded by the settings (see the module docstring)."""

    def __init__(self, app: RatingApp, settings: RatingSettings):
        import waitress

        logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # bursts are expected
        self.app = app
        self._map: dict = {}
        self._server = waitress.create_server(
            app, map=self._map, host=settings.host, port=settings.port,
            threads=settings.threads, connection_limit=settings.max_connections,
            backlog=settings.backlog, channel_timeout=settings.timeout, cleanup_interval=1,
            asyncore_loop_timeout=1, max_request_body_size=MAX_BODY,
            max_request_header_size=MAX_HEADER, ident="tfstyle-rating",
            expose_tracebacks=False)

    @property
    def server_address(self) -> tuple[str, int]:
        return self._server.effective_host, int(self._server.effective_port)

    def serve_forever(self) -> None:
        """Serve until `shutdown()` (from another thread) or Ctrl-C."""
        try:
            self._server.run()
        finally:
            self._server.task_dispatcher.shutdown()

    def shutdown(self) -> None:
        """Make `serve_forever` return: its loop closes the listener and every connection."""
        from waitress import wasyncore

        self._server.trigger.pull_trigger(lambda: wasyncore.close_all(self._map))

    def server_close(self) -> None:
        """Close what is still open (after serve_forever returned, or never ran)."""
        from waitress import wasyncore

        wasyncore.close_all(self._map)


def make_server(study_dir, db_path, settings: RatingSettings | None = None) -> RatingServer:
    """A server for the study in `study_dir` storing answers in `db_path` (call
    serve_forever(); port 0 picks a free port: see server_address)."""
    settings = settings or RatingSettings()
    manifest = load_manifest(study_dir, settings.directions)
    app = RatingApp(manifest, RatingStore(db_path, manifest.kind), settings)
    return RatingServer(app, settings)
