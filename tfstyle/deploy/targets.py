"""What an export ships: one `Target` per model, read from a trained model directory.

A target is a CycleGAN generator direction (MODEL_DIR/generators/{AtoB,BtoA}.keras) or the
attention auto-encoder (MODEL_DIR/autoencoder/) with one --styles image baked in. Each comes
with the real images it is checked on and calibrated with, and its Keras reference. A target
whose weights, or whose outputs on its check images, are not all finite is refused here,
before the exporter writes anything.

`preflight` checks the files the options name before anything is loaded; both raise
ExportError with a message that names the flag or the file.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tfstyle.deploy import checks, saved_model
from tfstyle.deploy.checks import ExportError
from tfstyle.deploy.options import ExportOptions, model_name


@dataclass
class Target:
    """One exported model: a generator direction, or the auto-encoder with one style.

    `model` has the generators' contract ([B, H, W, 3] in [-1, 1] -> the same) and is the
    reference every artifact is compared with; LiteRT files are converted from `lite_model`
    (the same model, or one that needs only builtin operators)."""

    name: str                     # TF Serving / file name
    kind: str                     # "generator" | "stylizer"
    direction: str                # AtoB, BtoA, or the style's name
    source_domain: str            # A, B, or "content"
    target_domain: str            # B, A, or the style's name
    model: object
    lite_model: object
    images: list                  # check images (RGB uint8)
    folder: Path                  # where they came from
    calibration: Callable         # (n, size) -> (float32 [n, size, size, 3], folder)
    policy: saved_model.SizePolicy
    source: dict                  # what the model was trained as (for the records)
    origin: Path                  # the file or folder the model was read from
    variants: tuple = ()          # LiteRT variants to make
    per_image: bool = False       # serving_default maps over the batch one image at a time

    def __post_init__(self):
        self.reference = checks.KerasReference(self.model)
        self._squares: dict = {}

    def squares(self, size: int) -> tuple[list[np.ndarray], np.ndarray]:
        """The check images as centre squares of `size` and the Keras outputs for them."""
        if size not in self._squares:
            crops = [checks.center_square(im, size) for im in self.images]
            self._squares[size] = crops, self.reference(np.stack(crops))
        return self._squares[size]


def preflight(model_dir, out_dir, options: ExportOptions) -> None:
    """What can be checked before anything is loaded: the model directory holds what the
    options ask for, the style images and --dataroot exist, OUT can be written."""
    model_dir = Path(model_dir)
    has_generators = (model_dir / "generators" / "info.json").is_file()
    has_autoencoder = (model_dir / "autoencoder" / "info.json").is_file()
    if not (has_generators or has_autoencoder):
        raise ExportError(f"--model_dir={model_dir}: holds neither generators/info.json nor "
                          "autoencoder/info.json; train with python -m train.cyclegan or "
                          "python -m train.autoencoder first")
    if has_autoencoder and not options.styles:
        raise ExportError(f"--styles: {model_dir}/autoencoder holds a style-transfer model: "
                          "name the style images to bake in, --styles=NAME=IMAGE[,...]")
    if options.styles and not has_autoencoder:
        raise ExportError(f"--styles: {model_dir} has no autoencoder/ to stylize with")
    for name, path in options.style_specs():
        if not Path(path).is_file():
            raise ExportError(f"--styles: {path} (style {name!r}) not found")
    for direction in options.directions:
        if not (model_dir / "generators" / f"{direction}.keras").is_file():
            raise ExportError(f"--directions: {model_dir} has no {direction} generator")
    if options.dataroot and not Path(options.dataroot).is_dir():
        raise ExportError(f"--dataroot={options.dataroot}: not a directory")
    out = Path(out_dir)
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ExportError(f"--out_dir={out_dir}: {existing} is not a writable folder")


def refuse_non_finite(target: Target, size: int) -> None:
    """ExportError unless every weight of the model, and its output on every check image
    (centre squares of `size`), is finite: a NaN passes no agreement check that means
    anything, and a model that computes one is not worth shipping."""
    for model in {id(m): m for m in (target.model, target.lite_model)}.values():
        bad = [w.path for w in model.weights if not np.isfinite(w.numpy()).all()]
        if bad:
            raise ExportError(
                f"{target.origin}: {len(bad)} weight tensor(s) hold NaN or inf "
                f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); refusing to export "
                f"{target.name}, nothing was written")
    _, outputs = target.squares(size)
    if not np.isfinite(outputs).all():
        raise ExportError(
            f"{target.origin}: the model's output on the check images of {target.folder} "
            f"holds NaN or inf; refusing to export {target.name}, nothing was written")


def _load(what: str, path: Path, load):
    """load(), with its errors turned into an ExportError that names `path`."""
    try:
        return load()
    except (OSError, ValueError) as err:
        message = checks.first_line(err)
        if str(path) not in message:
            message = f"{path}: cannot load the {what}: {message}"
        raise ExportError(message) from err


def generator_targets(model_dir: Path, options: ExportOptions) -> list[Target]:
    """The CycleGAN generators of MODEL_DIR/generators (none if there are none)."""
    from tfstyle.cyclegan import generators

    folder = generators.generators_dir(model_dir)
    if not (folder / "info.json").is_file():
        return []
    info = _load("generators' info.json", folder / "info.json",
                 lambda: generators.load_info(model_dir))
    dataroot = options.dataroot or info.get("dataroot")
    if not dataroot or not Path(dataroot).is_dir():
        raise ExportError(
            f"training data root {dataroot!r} (info.json's dataroot) is not a directory: "
            "pass --dataroot=<folder with trainA/ trainB/ [testA/ testB/]> for the check "
            "and calibration images")
    dataroot = Path(dataroot)
    available = [d for d in generators.DIRECTIONS if (folder / f"{d}.keras").is_file()]
    directions = list(options.directions or available)
    if not directions:
        raise ExportError(f"{folder} holds no generator (.keras) to export")
    variants = options.variants("generator")
    for d in directions:
        domain = checks.SOURCE_DOMAIN[d]
        if not checks.image_folders(dataroot, domain):
            raise ExportError(
                f"{dataroot} has no images in test{domain}/ or train{domain}/ to check "
                f"the {d} generator against (pass --dataroot=<training data root>)")
        if "int8" in variants and not checks.image_folders(dataroot, domain, ("train",)):
            raise ExportError(
                f"{dataroot}/train{domain} holds no images to calibrate the int8 {d} "
                "model (pass --dataroot=<training data root>, or leave int8 out of --tflite)")
    keys = ("block", "ngf", "n_blocks", "crop_size", "load_size", "step", "epoch")
    source = {"model_dir": str(model_dir.resolve()), "dataroot": str(dataroot),
              **{k: info[k] for k in keys if k in info}}
    targets = []
    for d in directions:
        path = folder / f"{d}.keras"
        generator = _load("generator", path, lambda d=d: generators.load_generator(model_dir, d))
        domain = checks.SOURCE_DOMAIN[d]
        images, image_folder = checks.evaluation_images(dataroot, domain, options.check_images,
                                                        options)
        policy = saved_model.policy_for(generator, options.serving_max_side,
                                        options.serving_max_pixels or None,
                                        options.serving_oversize)
        targets.append(Target(
            name=model_name(options.prefix(model_dir), d), kind="generator", direction=d,
            source_domain=domain, target_domain="B" if domain == "A" else "A",
            model=generator, lite_model=generator, images=images, folder=image_folder,
            calibration=lambda n, size, domain=domain: checks.calibration_images(
                dataroot, domain, n, size, options),
            policy=policy, source=source, origin=path, variants=variants,
            per_image=saved_model.attention_pixel_limit(generator) is not None))
    return targets


def _content_folder(model_dir: Path, info: dict, options: ExportOptions) -> Path:
    """Where an auto-encoder's check and calibration images come from: --dataroot, else the
    training's content_dir (the synthetic demo scenes under MODEL_DIR for "synthetic")."""
    folder = options.dataroot or info.get("content_dir")
    if folder == "synthetic":
        folder = model_dir / "synthetic_data"
    if not folder or not Path(folder).is_dir():
        raise ExportError(
            f"content folder {str(folder)!r} (the auto-encoder's content_dir) is not a "
            "directory: pass --dataroot=<folder of content images> for the check and "
            "calibration images")
    return Path(folder)


def stylizer_targets(model_dir: Path, options: ExportOptions) -> list[Target]:
    """The auto-encoder of MODEL_DIR/autoencoder with each of --styles baked in (none if
    there is no auto-encoder)."""
    from tfstyle.core.images import ImageError, read_image
    from tfstyle.deploy import style_model
    from tfstyle.style.autoencoder import autoencoder_dir, load_autoencoder
    from tfstyle.style.data import list_content_images
    from tfstyle.style.wct import NEWTON_SCHULZ_ITERATIONS

    folder = autoencoder_dir(model_dir)
    if not (folder / "info.json").is_file():
        return []
    autoencoder, info = _load("auto-encoder", folder, lambda: load_autoencoder(model_dir))
    content = _content_folder(model_dir, info, options)
    paths = list_content_images(content)
    images, _ = checks.read_some(paths, options.check_images, options)
    if not images:
        raise ExportError(f"no readable content images in {content} to check the stylizers "
                          "against (pass --dataroot=<folder of content images>)")

    def calibration(n, size):
        picked, _ = checks.read_some(paths, n, options)
        return np.stack([checks.center_square(im, size) for im in picked]).astype(
            np.float32), content

    stylize = options.stylize
    keys = ("cut", "attention", "width", "step", "vgg_weights", "crop_size")
    targets = []
    for name, path in options.style_specs():
        try:
            style = read_image(path, options)
        except (ImageError, FileNotFoundError) as err:
            raise ExportError(f"--styles: {err}") from err
        reference, lite = style_model.fixed_style_models(autoencoder, style, stylize)
        max_side = min(options.serving_max_side, stylize.max_size)
        limit = reference.pixel_limit(max_side)
        policy = saved_model.SizePolicy(
            max_side=max_side, max_pixels=min(options.serving_max_pixels or limit, limit),
            oversize=options.serving_oversize)
        targets.append(Target(
            name=model_name(options.prefix(model_dir), name), kind="stylizer", direction=name,
            source_domain="content", target_domain=name, model=reference, lite_model=lite,
            images=images, folder=content, calibration=calibration, policy=policy,
            source={"model_dir": str(model_dir.resolve()), "style_image": str(Path(path)),
                    "stylize": dataclasses.asdict(stylize),
                    "litert_whitening": f"newton_schulz x{NEWTON_SCHULZ_ITERATIONS}",
                    **{k: info[k] for k in keys if k in info}},
            origin=folder, variants=options.variants("stylizer"), per_image=True))
    return targets


def load_targets(model_dir, options: ExportOptions) -> list[Target]:
    """Every model of `model_dir` that the options ask for, each checked to be finite."""
    model_dir = Path(model_dir)
    targets = generator_targets(model_dir, options) + stylizer_targets(model_dir, options)
    if not targets:
        raise ExportError(f"{model_dir} holds no trained model: neither generators/ "
                          "(python -m train.cyclegan) nor autoencoder/ "
                          "(python -m train.autoencoder)")
    for target in targets:
        min_side = getattr(target.model, "min_side", 0)  # a stylizer's smallest image
        refuse_non_finite(target, max(options.tflite_size, min_side + -min_side % 4))
    return targets
