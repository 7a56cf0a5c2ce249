"""The seeds' rating studies: what raters are asked, about which images, in which order.

A study is a folder holding `rating_manifest.json` (MANIFEST) and the images it names (paths
relative to the folder). Two kinds:

* "translation", the caricature seed's study (methods.md section 2): one item per output of
  an evaluation report, written by `evaluation.report` (REPORT/rating_manifest.json). Raters
  score train outputs for their similarity to the illustrator's drawing and test outputs for
  their completeness as a caricature, on the seed's 5-point scale (SCALE, -2..2).
* "words", the texture seed's word-recognition study (methods.md section 4): one item per
  stylized image of `STUDY/<word>/<content>.png` (what `python -m tfstyle.texture
  --word=W --content=C.jpg --out=STUDY/W/C.png` writes), written by `write_word_manifest`.
  A rater sees the image and picks the texture word it shows from the candidate words.

Every rater sees the items in an order shuffled with a seed drawn from the rater id, and the
models under anonymous labels drawn per rater, so a returning rater gets the same order back.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from tfstyle.core.files import write_json_atomic
from tfstyle.core.images import list_images

#: The study's list of items, in the study (report) folder.
MANIFEST = "rating_manifest.json"
KINDS = ("translation", "words")
#: The caricature seed's 5-point scale: (score, label, the seed's own label).
SCALE = ((-2, "not similar", "似ていない"), (-1, "somewhat not similar", "やや似ていない"),
         (0, "neither", "どちらでもない"), (1, "somewhat similar", "やや似ている"),
         (2, "similar", "似ている"))
SCORES = frozenset(s for s, _, _ in SCALE)
SPLITS = ("train", "test")
#: The seed's questions: train images against the illustrator's drawing of the same face,
#: test images (no drawing exists) as caricatures in the illustrator's manner.
QUESTIONS = {
    "train": "How similar is the generated caricature to the illustrator's drawing?",
    "test": "How complete is the generated image as a caricature: how close is it to the "
            "feel of the illustrator's drawings?",
}
WORD_QUESTION = "Which texture word does this image show?"
#: Stems the texture tool gives its contact sheets (OUT_clusters.png), not stylized images.
CONTACT_SHEET_SUFFIX = "_clusters"


class RatingError(ValueError):
    """An answer, a study or a manifest that cannot be used; the message says why."""


@dataclass(frozen=True)
class Item:
    """One output of a translation model (the caricature study)."""
    id: str
    model: str
    split: str
    direction: str
    stem: str
    input: str
    output: str
    target: str | None


@dataclass(frozen=True)
class WordItem:
    """One stylized image of the word study: `image` was made from `content` for `word`."""
    id: str
    word: str
    content: str
    image: str


@dataclass
class Manifest:
    root: Path
    kind: str
    items: dict
    models: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    contents: list[str] = field(default_factory=list)

    def path(self, relative: str) -> Path:
        """The file `relative` inside the study folder (never outside it)."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise RatingError(f"{relative} points outside the study folder")
        return path


def _read(path: Path) -> dict:
    if not path.is_file():
        raise RatingError(f"{path} not found: build the report first (python -m "
                          "tfstyle.evaluate --out=...) or write a word study's manifest "
                          "(python -m tfstyle.rate --word_study=...)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RatingError(f"{path} is not a JSON manifest: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise RatingError(f"{path} is not a rating manifest (no list of items)")
    return data


def _items(path: Path, data: dict, cls) -> list:
    names = cls.__dataclass_fields__
    items = []
    for raw in data["items"]:
        if not isinstance(raw, dict):
            raise RatingError(f"{path}: an item is not an object")
        item = cls(**{k: raw.get(k) for k in names})
        required = [k for k in names if k != "target"]
        if not all(isinstance(getattr(item, k), str) and getattr(item, k) for k in required):
            raise RatingError(f"{path}: item {raw.get('id')!r} lacks one of {', '.join(required)}")
        items.append(item)
    if len({i.id for i in items}) != len(items):
        raise RatingError(f"{path}: item ids are not unique")
    return items


def load_manifest(study_dir, directions=("AtoB", "BtoA")) -> Manifest:
    """STUDY/rating_manifest.json as a Manifest. A translation study keeps the items of
    `directions` (the caricature seed rated photo -> caricature only: ("AtoB",)) and the
    models that have items among them (a one-direction model, CUT, is no system of a BtoA
    study, so the raters' anonymous labels cover only the systems they see)."""
    root = Path(study_dir)
    path = root / MANIFEST
    data = _read(path)
    kind = data.get("study", "translation")  # reports of tfstyle 0.1 carry no "study"
    if kind == "words":
        words, contents = data.get("words"), data.get("contents")
        items = _items(path, data, WordItem)
        if not isinstance(words, list) or len(words) < 2 or not isinstance(contents, list):
            raise RatingError(f"{path}: a word study needs a list of at least 2 words and a "
                              "list of contents")
        if any(i.word not in words or i.content not in contents for i in items):
            raise RatingError(f"{path}: an item names a word or content the lists lack")
        if not items:
            raise RatingError(f"{path} lists no items")
        return Manifest(root, kind, {i.id: i for i in items}, words=list(words),
                        contents=list(contents))
    if kind != "translation":
        raise RatingError(f"{path}: unknown study {kind!r} (known: {', '.join(KINDS)})")
    models = data.get("models")
    if not isinstance(models, list):
        raise RatingError(f"{path}: no list of models")
    items = {}
    for item in _items(path, data, Item):
        if item.split not in SPLITS or item.model not in models:
            raise RatingError(f"{path}: item {item.id} has an unknown split or model")
        if item.direction in directions:
            items[item.id] = item
    if not items:
        raise RatingError(f"{path} lists no items for the directions {', '.join(directions)}")
    rated = {i.model for i in items.values()}
    return Manifest(root, kind, items, models=[m for m in models if m in rated])


def write_word_manifest(study_dir) -> Manifest:
    """Write STUDY/rating_manifest.json for the word study from STUDY/<word>/<content>.<ext>
    (one sub-folder per texture word, one stylized image per content image; the texture
    tool's contact sheets, *_clusters.png, are left out) and return it. RatingError when
    fewer than two words have images."""
    root = Path(study_dir)
    if not root.is_dir():
        raise RatingError(f"{root} is not a folder")
    images = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = [f for f in list_images(folder) if not f.stem.endswith(CONTACT_SHEET_SUFFIX)]
        if files:
            images[folder.name] = files
    if len(images) < 2:
        raise RatingError(f"{root} needs a sub-folder of stylized images for each of at least "
                          f"two words (STUDY/<word>/<content>.png); found {len(images)}")
    items = [{"id": _word_item_id(word, f.stem), "word": word, "content": f.stem,
              "image": f"{word}/{f.name}"} for word, files in images.items() for f in files]
    contents = sorted({i["content"] for i in items})
    write_json_atomic(root / MANIFEST, {"version": 1, "study": "words", "words": list(images),
                                        "contents": contents, "items": items},
                      ensure_ascii=False)
    return load_manifest(root)


def _word_item_id(word: str, content: str) -> str:
    return hashlib.sha256(f"words\0{word}\0{content}".encode("utf-8")).hexdigest()[:16]


def _rng(rater: str, purpose: str) -> random.Random:
    digest = hashlib.sha256(f"{purpose}\0{rater}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def rater_order(rater: str, item_ids) -> list[str]:
    """The items in the order `rater` sees them (shuffled, seeded by the rater id)."""
    order = sorted(item_ids)
    _rng(rater, "order").shuffle(order)
    return order


def model_labels(rater: str, models) -> dict[str, str]:
    """Anonymous label per model for `rater`: a random assignment of 'System A', 'B', ..."""
    letters = [chr(ord("A") + i) if i < 26 else f"Z{i}" for i in range(len(models))]
    _rng(rater, "labels").shuffle(letters)
    return {m: f"System {letter}" for m, letter in zip(sorted(models), letters)}


def word_choices(rater: str, item: WordItem, words, count: int = 0) -> list[str]:
    """The candidate words `rater` is offered for `item`: every word of the study in its
    order (count 0, the seed's answer sheet), or the right word and count - 1 others drawn
    for this rater and item, shuffled."""
    if not count or count >= len(words):
        return list(words)
    rng = _rng(rater, f"choices\0{item.id}")
    choices = rng.sample([w for w in words if w != item.word], count - 1) + [item.word]
    rng.shuffle(choices)
    return choices
