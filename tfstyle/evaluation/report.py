"""Evaluation report for trained CycleGAN-family models: translations, metrics, an HTML page.

`build_report(model_dirs, dataroot, out_dir, options)` does, for every model directory (its
`generators/` as `tfstyle.cyclegan.generators` writes them: both directions, or one, as CUT /
FastCUT runs and distilled students write AtoB only):

1. Reads testA/ and testB/ (and up to `num_train` images of trainA/ and trainB/, evenly spaced
   over the sorted file list, for the rating study's "train" split), resized bicubically to
   `image_size` x `image_size` (default: the first model's crop_size; 0 keeps every image's
   own size). Unreadable files are skipped and listed.
2. Translates testA with AtoB and testB with BtoA (and the train images likewise) with
   `translator.Translator`, for the directions the model has, and, when it has both, runs
   the cycle back (A -> B -> A, B -> A -> B).
3. Computes on the test images, per model and direction it has:
   FID and KID between the translated images and the real test images of the target domain
   (AtoB outputs vs testB, BtoA outputs vs testA; `evaluation.metrics`, features from
   `evaluation.inception` unless another feature function is given), cycle reconstruction
   PSNR and SSIM (n/a for a one-direction model: no generator leads back), and, when testA/
   and testB/ hold pairs (files with the same stem), L1/PSNR/SSIM of the output to its
   paired target. FID on fewer than `FID_MIN_RELIABLE` images per set is flagged.
4. Writes OUT/metrics.json, OUT/index.html (metrics table, training-loss plots read from
   MODEL_DIR/logs by `evaluation.training_logs`, and a grid with one row per image: input,
   the output of every model with that direction side by side, paired target),
   OUT/plots/*.png, OUT/images/** and OUT/rating_manifest.json, the list of outputs the
   rating study (`evaluation.rating`) asks raters about.
"""

from __future__ import annotations

import datetime
import hashlib
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import quote

import numpy as np
from absl import logging

from tfstyle.core.config import setting
from tfstyle.core.files import write_text_atomic
from tfstyle.core.images import (ImageError, ImageLimits, list_images, read_image, resize,
                                 write_image)
from tfstyle.evaluation import metrics
from tfstyle.evaluation.studies import MANIFEST
from tfstyle.evaluation.training_logs import plot_losses, read_scalars

#: FID on fewer images than this per set is marked unreliable.
FID_MIN_RELIABLE = 500
#: Source and target domain of each direction.
DIRECTION_DOMAINS = {"AtoB": ("A", "B"), "BtoA": ("B", "A")}
#: The direction that leads back (the second half of a cycle).
OPPOSITE = {"AtoB": "BtoA", "BtoA": "AtoB"}


class ReportError(ValueError):
    """Inputs the report cannot be built from; the message names the folder or file."""


@dataclass
class ReportOptions(ImageLimits):
    """Settings of an evaluation report; `python -m tfstyle.evaluate` has a flag for each
    (with the image limits of every image it reads)."""
    inception_weights: str = setting(
        "imagenet", "InceptionV3 weights: 'imagenet' (Keras cache or download), a local file "
        "(.h5 / .weights.h5 / .keras), or 'random' (smoke tests only).")
    inception_size: int = setting(299, "Inception input side. FID is defined at 299; smaller "
                                  "(>= 75) only for quick smoke runs.", min=75)
    image_size: int = setting(None, "Images are resized to this square side before "
                              "translation; default: the first model's crop_size; 0: keep "
                              "each size.", min=0)
    num_train: int = setting(20, "Train images per domain to translate for the report and the "
                             "rating study (0: none).", min=0)
    paired: str = setting("auto", "Paired metrics: testA/testB files with the same stem are "
                          "pairs (auto: if there are any).", choices=("auto", "yes", "no"))
    kid_subsets: int = setting(100, "KID: number of random subsets.", min=1)
    kid_subset_size: int = setting(1000, "KID: largest subset size.", min=2)
    tile: int = setting(512, "Largest side translated in one piece (see tfstyle.translate).",
                        min=16)
    overlap: int = setting(32, "Overlap of neighbouring tiles in pixels.", min=0)
    seed: int = setting(0, "Seed of the KID subsets.")

    def validate(self):
        weights = self.inception_weights
        self.need(weights in ("imagenet", "random") or Path(weights).expanduser().is_file(),
                  "inception_weights", "not 'imagenet', 'random' or an existing file")
        self.need(self.tile % 4 == 0, "tile", "must be a multiple of 4")
        self.need(self.overlap < self.tile // 2, "overlap", "must be less than tile/2")


# ------------------------------------------------------------------------------------------
# Models and images
# ------------------------------------------------------------------------------------------


@dataclass
class ModelEntry:
    model_dir: Path
    name: str       # shown in the report: "caricature_se (CycleSE)"
    slug: str       # folder name for its images
    info: dict
    directions: tuple[str, ...]  # those whose generator it has: AtoB, BtoA or both


def model_kind(info: dict) -> str:
    """What a model is, from its info.json: the block's model name (CycleGAN, CycleSE, ...),
    CUT or FastCUT (trained with --model=cut; FastCUT without nce_idt), ", distilled" for a
    student of `train.distill`."""
    from tfstyle.cyclegan.blocks import BLOCKS
    block = str(info.get("block", "resnet"))
    kind = BLOCKS[block].label if block in BLOCKS else block
    if info.get("model") == "cut":
        cut = "CUT" if info.get("config", {}).get("nce_idt", True) else "FastCUT"
        kind = cut if block == "resnet" else f"{cut}, {block} blocks"
    return kind + (", distilled" if "distilled_from" in info else "")


def describe_models(model_dirs: Sequence) -> list[ModelEntry]:
    """A ModelEntry per directory, with the directions whose generator it holds;
    FileNotFoundError names a directory without info.json or without any generator.

    The name is the directory's basename plus the model's kind (`model_kind`); when two
    basenames are equal, parent folders are added until the names differ."""
    from tfstyle.cyclegan import generators  # TensorFlow: imported when models are read
    dirs = [Path(d) for d in model_dirs]
    if not dirs:
        raise ReportError("no model directories given")
    infos, directions = [], []
    for d in dirs:
        info = generators.load_info(d)
        folder = generators.generators_dir(d)
        present = tuple(x for x in generators.DIRECTIONS if (folder / f"{x}.keras").is_file())
        if not present:
            raise FileNotFoundError(f"{folder} holds neither AtoB.keras nor BtoA.keras: {d} "
                                    "holds no trained generator")
        infos.append(info)
        directions.append(present)
    parts = [d.resolve().parts for d in dirs]
    depth = 1
    while True:
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels) or depth >= max(len(p) for p in parts):
            break
        depth += 1
    entries = []
    for i, (d, info, label, present) in enumerate(zip(dirs, infos, labels, directions)):
        name = f"{label} ({model_kind(info)})"
        if any(e.name == name for e in entries):
            name = f"{name} #{i + 1}"
        slug = f"m{i + 1}_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", d.resolve().name)[:40]
        entries.append(ModelEntry(d, name, slug, info, present))
    return entries


@dataclass
class ImageSet:
    """Images of one folder, resized; `stems` are unique file stems in file-name order."""
    folder: Path
    stems: list[str] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def by_stem(self) -> dict[str, np.ndarray]:
        return dict(zip(self.stems, self.images))


def read_folder(folder, size: int, limit: int | None = None,
                limits: ImageLimits | None = None) -> ImageSet:
    """Readable images of `folder` resized to size x size (size 0: as they are). With `limit`,
    at most that many files, evenly spaced over the sorted list; files over `limits` (see
    read_image) are skipped like unreadable ones."""
    folder = Path(folder)
    files = list_images(folder)
    if limit is not None and len(files) > limit:
        picks = np.unique(np.linspace(0, len(files) - 1, limit).round().astype(int))
        files = [files[i] for i in picks]
    out = ImageSet(folder)
    for path in files:
        if path.stem in out.stems:
            out.skipped.append(f"{path}: another file with stem {path.stem!r} comes first")
            continue
        try:
            image = read_image(path, limits)
        except ImageError as err:
            out.skipped.append(str(err))
            continue
        out.stems.append(path.stem)
        out.images.append(resize(image, (size, size)) if size else image)
    for message in out.skipped:
        logging.warning("skipped %s", message)
    return out


def check_dataroot(dataroot) -> Path:
    """`dataroot` if its testA/ and testB/ hold images, else ReportError naming the folder."""
    root = Path(dataroot)
    for name in ("testA", "testB"):
        folder = root / name
        if not folder.is_dir():
            raise ReportError(f"{folder} does not exist (the data root needs testA/ and testB/)")
        if not list_images(folder):
            raise ReportError(f"{folder} holds no image files")
    return root


# ------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------


def _finite(value):
    """JSON-safe number: nan/inf -> None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fit(image: np.ndarray, shape) -> np.ndarray:
    return image if image.shape == tuple(shape) else resize(image, shape[:2])


def direction_metrics(fake: list[np.ndarray], fake_features: np.ndarray,
                      real_features: np.ndarray, sources: list[np.ndarray],
                      cycled: list[np.ndarray] | None,
                      pairs: list[tuple[np.ndarray, np.ndarray]],
                      kid_subsets: int, kid_subset_size: int, seed: int) -> dict:
    """Metrics of one model and direction (see the module docstring); `cycled` None: the
    model has no generator back, its cycle PSNR/SSIM are None."""
    n_fake, n_real = len(fake_features), len(real_features)
    out = {"n": len(fake), "n_real": n_real,
           "fid": None, "fid_reliable": min(n_fake, n_real) >= FID_MIN_RELIABLE,
           "kid": None, "kid_se": None, "kid_se_method": None, "kid_subset_size": None}
    if min(n_fake, n_real) >= 2:
        out["fid"] = _finite(metrics.fid(fake_features, real_features))
        k = metrics.kid(fake_features, real_features, kid_subsets, kid_subset_size, seed)
        out.update(kid=_finite(k.value), kid_se=_finite(k.se), kid_se_method=k.se_method,
                   kid_subset_size=k.subset_size)
    out["cycle_psnr"] = (None if cycled is None
                         else _finite(metrics.mean_of(metrics.psnr, cycled, sources)))
    out["cycle_ssim"] = None if cycled is None else _finite(metrics.mean_ssim(cycled, sources))
    out["paired_n"] = len(pairs)
    if pairs:
        outputs = [_fit(o, t.shape) for o, t in pairs]
        targets = [t for _, t in pairs]
        out["paired_l1"] = _finite(metrics.mean_of(metrics.l1, outputs, targets))
        out["paired_psnr"] = _finite(metrics.mean_of(metrics.psnr, outputs, targets))
        out["paired_ssim"] = _finite(metrics.mean_ssim(outputs, targets))
    return out


def _fmt(value, spec=".4g") -> str:
    return "-" if value is None else format(value, spec)


def _fmt_cycle(m: dict, key: str, spec: str) -> str:
    return "n/a" if "cycle_na" in m else _fmt(m[key], spec)


def _directions(model: dict) -> list[str]:
    """The directions a model entry of metrics.json has metrics for."""
    return [d for d in DIRECTION_DOMAINS if d in model]


def _fmt_fid(m: dict) -> str:
    if m["fid"] is None:
        return "-"
    text = format(m["fid"], ".2f" if abs(m["fid"]) >= 1 else ".3g")
    return text + ("" if m["fid_reliable"] else "*")


def format_table(report: dict) -> str:
    """The metrics of `report` (the metrics.json dict) as a plain-text table."""
    header = ["model", "dir", "n", "FID", "KID (± se)", "cycle PSNR", "cycle SSIM",
              "pair L1", "pair PSNR", "pair SSIM"]
    rows = []
    for model in report["models"]:
        for direction in _directions(model):
            m = model[direction]
            fid_text = _fmt_fid(m)
            kid_text = _fmt(m["kid"]) + ("" if m["kid_se"] is None else f" ± {m['kid_se']:.2g}")
            rows.append([model["name"], direction.replace("to", "->"), str(m["n"]), fid_text,
                         kid_text, _fmt_cycle(m, "cycle_psnr", ".2f"),
                         _fmt_cycle(m, "cycle_ssim", ".3f"),
                         _fmt(m.get("paired_l1"), ".4f"), _fmt(m.get("paired_psnr"), ".2f"),
                         _fmt(m.get("paired_ssim"), ".3f")])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [f"note: {n}" for n in report["notes"]])


# ------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------


def item_id(split: str, direction: str, stem: str, model_name: str) -> str:
    """Stable opaque id of one output for the rating study."""
    key = "\0".join((split, direction, stem, model_name))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def _file_name(stem: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
    if safe != stem:  # keep distinct stems distinct after sanitising
        safe += "_" + hashlib.sha1(stem.encode("utf-8")).hexdigest()[:6]
    return safe + ".png"


def build_report(model_dirs: Sequence, dataroot, out_dir,
                 options: ReportOptions | None = None, *,
                 features: Callable[[list], np.ndarray] | None = None,
                 feature_description: str | None = None) -> dict:
    """Translate, measure and write the report (see the module docstring and ReportOptions);
    returns the metrics.json dict.

    `features` is a function from a list of RGB uint8 images to [N, D] features; default the
    InceptionV3 pool features with `options.inception_weights` (`tfstyle.evaluation.inception`).
    """
    from tfstyle.cyclegan import generators, translator  # TensorFlow, once flags are checked

    options = options or ReportOptions()
    paired, num_train = options.paired, options.num_train
    models = describe_models(model_dirs)
    root = check_dataroot(dataroot)
    out = Path(out_dir)
    size = (int(models[0].info.get("crop_size", 256)) if options.image_size is None
            else options.image_size)
    if features is None:
        from tfstyle.evaluation.inception import InceptionFeatures
        extractor = InceptionFeatures(options.inception_weights,
                                      input_size=options.inception_size)
        features, feature_description = extractor, extractor.description
    feature_description = feature_description or getattr(features, "__name__", str(features))

    # ---- images
    sets = {("test", d): read_folder(root / f"test{d}", size, limits=options) for d in "AB"}
    for d in "AB":
        folder = root / f"train{d}"
        sets[("train", d)] = (read_folder(folder, size, num_train, options)
                              if num_train and folder.is_dir() else ImageSet(folder))
    skipped = [m for s in sets.values() for m in s.skipped]
    for d in "AB":
        if not sets[("test", d)].images:
            raise ReportError(f"{root / f'test{d}'} holds no readable images")
    pair_stems = {}
    for split in ("test", "train"):
        common = sorted(set(sets[(split, "A")].stems) & set(sets[(split, "B")].stems))
        pair_stems[split] = common if paired != "no" else []
    if paired == "yes" and not pair_stems["test"]:
        raise ReportError(f"paired='yes' but no file stem is in both {root / 'testA'} and "
                          f"{root / 'testB'}")
    notes = []
    if paired == "auto" and pair_stems["test"]:
        notes.append(f"{len(pair_stems['test'])} test images are paired by file name (same stem "
                     "in testA/ and testB/); pass --paired=no if equal names do not mean pairs.")

    # ---- real images and their features
    for (split, d), image_set in sets.items():
        for stem, image in zip(image_set.stems, image_set.images):
            write_image(out / "images" / "real" / split / d / _file_name(stem), image)
    logging.info("features of the real test images")
    real_features = {d: features(sets[("test", d)].images) for d in "AB"}

    # ---- models
    model_reports, outputs, scalars = [], {}, {}
    for model in models:
        logging.info("translating with %s", model.name)
        translators = {direction: translator.Translator(
            generators.load_generator(model.model_dir, direction), options.tile, options.overlap)
            for direction in model.directions}
        entry = {"name": model.name, "model_dir": str(model.model_dir),
                 "block": model.info.get("block"), "step": model.info.get("step"),
                 "epoch": model.info.get("epoch"), "directions": list(model.directions)}
        for direction in model.directions:
            src, dst = DIRECTION_DOMAINS[direction]
            back = translators.get(OPPOSITE[direction])
            for split in ("test", "train"):
                image_set = sets[(split, src)]
                fakes = [translators[direction](x) for x in image_set.images]
                outputs[(model.slug, split, direction)] = dict(zip(image_set.stems, fakes))
                for stem, fake in zip(image_set.stems, fakes):
                    write_image(out / "images" / model.slug / split / direction
                                / _file_name(stem), fake)
                if split != "test":
                    continue
                cycled = None if back is None else [back(f) for f in fakes]
                targets = sets[("test", dst)].by_stem()
                pairs = [(outputs[(model.slug, "test", direction)][s], targets[s])
                         for s in pair_stems["test"]]
                logging.info("metrics of %s %s", model.name, direction)
                entry[direction] = direction_metrics(
                    fakes, features(fakes), real_features[dst], image_set.images, cycled, pairs,
                    options.kid_subsets, options.kid_subset_size, options.seed)
                if back is None:
                    entry[direction]["cycle_na"] = (
                        f"no {OPPOSITE[direction]} generator in {model.model_dir}/generators")
        scalars[model.name] = read_scalars(model.model_dir / "logs")
        entry["has_logs"] = bool(scalars[model.name])
        entry["final_scalars"] = {t: float(v[-1]) for t, (_, v) in scalars[model.name].items()}
        model_reports.append(entry)
    plot = plot_losses(scalars, out / "plots" / "losses.png")

    n_min = min(len(sets[("test", "A")].images), len(sets[("test", "B")].images))
    if n_min < FID_MIN_RELIABLE:
        notes.insert(0, f"* FID on fewer than {FID_MIN_RELIABLE} images per set (here {n_min}) "
                        "is unreliable: it is biased upward and its covariances are "
                        "rank-deficient. Compare such FIDs only between models evaluated on the "
                        "same images, and prefer KID (unbiased) on small test sets.")
    one_way = [m for m in models if len(m.directions) == 1]
    if one_way:
        notes.append("cycle PSNR/SSIM n/a: a cycle needs both generators, and "
                     + "; ".join(f"{m.name} has {m.directions[0]} only (no "
                                 f"{OPPOSITE[m.directions[0]]}.keras in its generators/)"
                                 for m in one_way)
                     + ". A missing direction is left out of the table, the grids and the "
                     "rating manifest.")
    if "random" in feature_description.lower():
        notes.append("the feature extractor has RANDOM weights: FID/KID values are meaningless "
                     "(tests and smoke runs only).")
    report = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dataroot": str(root.resolve()), "image_size": size,
        "feature_extractor": feature_description,
        "num_test": {d: len(sets[("test", d)].images) for d in "AB"},
        "num_train": {d: len(sets[("train", d)].images) for d in "AB"},
        "paired": {"mode": paired, "test_pairs": len(pair_stems["test"]),
                   "train_pairs": len(pair_stems["train"])},
        "fid_min_reliable": FID_MIN_RELIABLE,
        "kid": {"num_subsets": options.kid_subsets, "max_subset_size": options.kid_subset_size,
                "seed": options.seed},
        "skipped": skipped, "notes": notes, "models": model_reports,
        "loss_plot": plot.relative_to(out).as_posix() if plot else None,
    }
    write_text_atomic(out / "metrics.json", json.dumps(report, indent=2))
    write_text_atomic(out / MANIFEST, json.dumps(_manifest(models, sets, pair_stems), indent=2))
    write_text_atomic(out / "index.html", render_html(report, models, sets, pair_stems))
    return report


def _manifest(models, sets, pair_stems) -> dict:
    items = []
    for split in ("test", "train"):
        for direction, (src, dst) in DIRECTION_DOMAINS.items():
            for stem in sets[(split, src)].stems:
                target = (f"images/real/{split}/{dst}/{_file_name(stem)}"
                          if stem in pair_stems[split] else None)
                for model in (m for m in models if direction in m.directions):
                    items.append({
                        "id": item_id(split, direction, stem, model.name), "model": model.name,
                        "split": split, "direction": direction, "stem": stem,
                        "input": f"images/real/{split}/{src}/{_file_name(stem)}",
                        "output": f"images/{model.slug}/{split}/{direction}/{_file_name(stem)}",
                        "target": target})
    return {"version": 1, "models": [m.name for m in models], "items": items}


_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f0f0f0; }
table.metrics td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.grid td { text-align: center; vertical-align: top; }
table.grid img { width: 160px; height: auto; display: block; }
.caption { font-size: 0.8em; color: #555; }
.note { font-size: 0.9em; color: #7a4b00; }
img.plot { max-width: 100%; border: 1px solid #ddd; margin-bottom: 1em; }
"""


def render_html(report: dict, models: list[ModelEntry], sets, pair_stems) -> str:
    """The static report page (no scripts; every image is a relative link under the report)."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<title>tfstyle evaluation</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>tfstyle evaluation</h1>",
             f"<p>Data: <code>{esc(report['dataroot'])}</code>; test images A: "
             f"{report['num_test']['A']}, B: {report['num_test']['B']}; image size: "
             f"{report['image_size'] or 'native'}; features: {esc(report['feature_extractor'])}; "
             f"created {esc(report['created'])}.</p>",
             "<h2>Metrics (test images)</h2>", "<table class='metrics'><tr>"]
    heads = ["model", "direction", "n", "FID", "KID", "KID se", "cycle PSNR", "cycle SSIM",
             "paired L1", "paired PSNR", "paired SSIM"]
    parts.append("".join(f"<th>{h}</th>" for h in heads) + "</tr>")
    for model in report["models"]:
        for direction in _directions(model):
            m = model[direction]
            cells = [_fmt_fid(m),
                     _fmt(m["kid"]), _fmt(m["kid_se"], ".2g"),
                     _fmt_cycle(m, "cycle_psnr", ".2f"), _fmt_cycle(m, "cycle_ssim", ".3f"),
                     _fmt(m.get("paired_l1"), ".4f"),
                     _fmt(m.get("paired_psnr"), ".2f"), _fmt(m.get("paired_ssim"), ".3f")]
            parts.append(f"<tr><td>{esc(model['name'])}</td><td>{direction[0]} &rarr; "
                         f"{direction[-1]}</td><td class='num'>{m['n']}</td>"
                         + "".join(f"<td class='num'>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    parts += [f"<p class='note'>{esc(n)}</p>" for n in report["notes"]]
    if report["skipped"]:
        parts.append("<p class='note'>Skipped files: "
                     + "; ".join(esc(s) for s in report["skipped"]) + "</p>")

    parts.append("<h2>Training losses</h2>")
    if report["loss_plot"]:
        parts.append(f"<img class='plot' src='{quote(report['loss_plot'])}' "
                     "alt='training losses'>")
    for model in report["models"]:
        if not model["has_logs"]:
            parts.append(f"<p>{esc(model['name'])}: no training logs in "
                         f"<code>{esc(model['model_dir'])}/logs</code>.</p>")

    for split in ("test", "train"):
        for direction, (src, dst) in DIRECTION_DOMAINS.items():
            stems = sets[(split, src)].stems
            shown = [m for m in models if direction in m.directions]
            if not stems or not shown:
                continue
            has_target = any(s in pair_stems[split] for s in stems)
            parts.append(f"<h2>{split.capitalize()} images: {src} &rarr; {dst}</h2>")
            if len(shown) < len(models):
                parts.append(f"<p class='note'>Without a {direction} generator, not shown: "
                             + ", ".join(esc(m.name) for m in models if m not in shown)
                             + ".</p>")
            parts.append("<table class='grid'><tr><th>input</th>"
                         + "".join(f"<th>{esc(m.name)}</th>" for m in shown)
                         + ("<th>paired target</th>" if has_target else "") + "</tr>")
            for stem in stems:
                name = quote(_file_name(stem))
                cells = [f"images/real/{split}/{src}/{name}"]
                cells += [f"images/{quote(m.slug)}/{split}/{direction}/{name}" for m in shown]
                row = "".join(f"<td><img src='{c}' alt='{esc(stem)}' loading='eager'></td>"
                              for c in cells)
                if has_target:
                    row += (f"<td><img src='images/real/{split}/{dst}/{name}' "
                            f"alt='target {esc(stem)}'></td>" if stem in pair_stems[split]
                            else "<td></td>")
                parts.append(f"<tr>{row}</tr><tr><td class='caption' colspan='"
                             f"{len(shown) + 1 + has_target}'>{esc(stem)}</td></tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
