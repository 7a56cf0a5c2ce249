"""Import the official PyTorch CycleGAN's networks: pretrained generators become a tfstyle
model directory, a training run's checkpoint folder becomes a tfstyle run to fine-tune.

    import_pytorch(ImportSettings(pth="horse2zebra.pth", model_dir="runs/h2z"))
    import_pytorch(ImportSettings(pth="checkpoints/h2z", model_dir="runs/h2z_ft",
                                  dataroot="datasets/horse2zebra"))

`python -m export.import_pytorch` is the command (docs/pretrained.md).

- A **state dict file** (`latest_net_G.pth` of the official zoo, or one `<epoch>_net_G_A.pth`)
  is a `ResnetGenerator`; it is written as MODEL_DIR/generators/<direction>.keras with
  info.json, as training writes them (`translate`, `export.generators` and `evaluate` read it).
  A second import with the other direction completes the pair.
- A **checkpoint folder** of the official `train.py` (`<epoch>_net_G_A.pth`, `_G_B`, `_D_A`,
  `_D_B`) gives both generators, and with the discriminators a run: config.json, flags.txt and
  checkpoints/ckpt-0 holding the imported networks with a fresh optimizer state (Adam moments
  zero, step 0) and empty image pools, so `python -m train.cyclegan --flagfile=MODEL_DIR/flags.txt`
  fine-tunes from the imported weights.

Official names map to ours: G_A (A -> B) is G / AtoB, G_B is F / BtoA; the official D_A judges
G_A's outputs, i.e. domain B, so it becomes our D_B (and D_B our D_A).

The layout is read off the tensors: ngf from the first convolution, the number of residual
blocks from the block keys, the discriminator's ndf and layers likewise. Only the official
ResNet generator and PatchGAN discriminator with instance norm without affine parameters,
reflection padding and no dropout map onto tfstyle's networks; anything else (U-Net
generators, batch norm, dropout, zero padding, keys of other networks) is refused with a
message naming the keys. Convolution weights go from PyTorch's [out, in, kh, kw] (transposed
convolutions: [in, out, kh, kw]) to Keras's [kh, kw, in, out] ([kh, kw, out, in]); both frameworks
compute the same cross-correlation, so no kernel is flipped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfstyle.core.config import Config, setting
from tfstyle.cyclegan.pth_reader import load_state_dict

DIRECTIONS = ("AtoB", "BtoA")
#: The networks of an official checkpoint folder: <epoch>_net_<name>.pth.
OFFICIAL_NETS = ("G_A", "G_B", "D_A", "D_B")
#: Stale buffers that instance norm layers of PyTorch < 0.4 saved (the official loader drops
#: them too); accepted and ignored where a norm layer without parameters sits.
STALE_NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class PytorchImportError(ValueError):
    """What cannot be imported, or where it cannot go; the message names the file or flag."""


@dataclass
class ImportSettings(Config):
    """The settings of an import; `python -m export.import_pytorch` has a flag for each."""
    pth: str = setting("", "An official generator state dict (e.g. latest_net_G.pth of the "
                       "pretrained zoo), or the checkpoint folder of an official training run "
                       "(<epoch>_net_G_A.pth, _G_B, _D_A, _D_B).",
                       required="give a .pth state dict or an official checkpoint folder")
    model_dir: str = setting("", "Model directory to write: generators/ (and, from a "
                             "checkpoint folder with discriminators, a run to fine-tune).",
                             required="give the model directory to write")
    direction: str = setting("AtoB", "Which generator a state dict file is: AtoB (A -> B) or "
                             "BtoA. A checkpoint folder gives both (G_A: AtoB, G_B: BtoA).",
                             choices=DIRECTIONS)
    epoch: str = setting("latest", "Checkpoint of a folder to import: <epoch>_net_G_A.pth ...")
    dataroot: str = setting("", "Folder with trainA/ trainB/ [testA/ testB/]: the export's "
                            "check and calibration images, and the data a run fine-tunes on "
                            "(required for a run).")
    overwrite: bool = setting(False, "Replace a generator of the same direction in "
                              "--model_dir (a run is never overwritten).")
    crop_size: int = setting(256, "A run's training crop size (divisible by 4).", min=16)
    load_size: int = setting(286, "A run's image resize before cropping.", min=16)
    batch_size: int = setting(1, "A run's images per replica per step.", min=1)
    pool_size: int = setting(50, "A run's image pool size (0 disables it).", min=0)

    def validate(self):
        self.need(re.fullmatch(r"[A-Za-z0-9_.-]+", self.epoch) is not None, "epoch",
                  "must be a checkpoint name such as latest or 200")
        self.need(self.crop_size % 4 == 0, "crop_size", "must be divisible by 4")
        self.need(self.crop_size <= self.load_size, "crop_size",
                  f"must not exceed --load_size={self.load_size}")


@dataclass
class Plan:
    """How a state dict maps onto a Keras network: (PyTorch prefix, Keras conv layer) pairs
    and the prefixes where the official network has a parameter-free norm layer."""
    convs: list
    norms: set


def _need_rgb(source, key: str, weight, what: str) -> None:
    """The first convolution of an imported network must take RGB images."""
    if weight.shape[1] != 3:
        raise PytorchImportError(f"{source}: {key} takes {weight.shape[1]} input channels; "
                                 f"tfstyle's {what} RGB images (3)")

def _list(keys, limit: int = 6) -> str:
    keys = sorted(keys, key=_natural)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _natural(key: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key)]


def _strip_data_parallel(tensors: dict) -> dict:
    """Keys of a network saved inside nn.DataParallel start with 'module.'."""
    if tensors and all(k.startswith("module.") for k in tensors):
        return {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def _conv_ids(tensors: dict, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k, v in tensors.items()
                   if (m := re.fullmatch(pattern, k)) and np.ndim(v) == 4})


# -- generators ---------------------------------------------------------------------------
def generator_layout(tensors: dict, source: str) -> tuple[int, int]:
    """(ngf, n_blocks) of an official ResnetGenerator state dict; PytorchImportError naming
    the keys for a U-Net, a discriminator or anything else that is no ResNet generator."""
    unet = [k for k in tensors if k.startswith("model.model.")]
    if unet:
        raise PytorchImportError(
            f"{source}: a U-Net generator (keys {_list(unet)}): tfstyle's generators are the "
            "official ResNet generators (resnet_9blocks, resnet_6blocks) only")
    first = tensors.get("model.1.weight")
    if first is None or np.ndim(first) != 4 or first.shape[2:] != (7, 7):
        d0 = tensors.get("model.0.weight")
        if d0 is not None and np.ndim(d0) == 4 and d0.shape[2:] == (4, 4):
            raise PytorchImportError(f"{source}: a PatchGAN discriminator (model.0.weight "
                                     f"{tuple(d0.shape)}), not a generator")
        raise PytorchImportError(
            f"{source}: no 7x7 convolution model.1.weight: not an official ResnetGenerator "
            f"state dict (keys: {_list(tensors)})")
    _need_rgb(source, "model.1.weight", first, "generators translate")
    blocks = sorted({int(m.group(1)) for k in tensors
                     if (m := re.match(r"model\.(\d+)\.conv_block\.", k))})
    if blocks != list(range(10, 10 + len(blocks))):
        raise PytorchImportError(f"{source}: residual blocks at model.{blocks} where the "
                                 "official layout has consecutive blocks from model.10")
    convs_at = lambda position: [  # noqa: E731
        k for k, v in tensors.items() if np.ndim(v) == 4
        and re.fullmatch(rf"model\.\d+\.conv_block\.{position}\.weight", k)]
    if convs_at(6):
        raise PytorchImportError(
            f"{source}: dropout in the residual blocks (use_dropout: {_list(convs_at(6))} "
            "follow a Dropout layer); tfstyle's generators have none (the official CycleGAN "
            "trains with --no_dropout by default)")
    if convs_at(0):
        raise PytorchImportError(
            f"{source}: residual blocks with zero padding (padding_type='zero': "
            f"{_list(convs_at(0))}); tfstyle's blocks use reflection padding")
    return int(first.shape[0]), len(blocks)


def _generator_plan(generator) -> Plan:
    n = generator.n_blocks
    convs = {layer.name: layer for layer in generator.stem + generator.down + generator.up
             + generator.head}
    pairs = [("model.1", convs["stem_conv"]), ("model.4", convs["down1_conv"]),
             ("model.7", convs["down2_conv"])]
    norms = {"model.2", "model.5", "model.8", f"model.{11 + n}", f"model.{14 + n}"}
    for i, block in enumerate(generator.blocks):
        branch = {layer.name: layer for layer in block.branch}
        prefix = f"model.{10 + i}.conv_block"
        pairs += [(f"{prefix}.1", branch["conv1"]), (f"{prefix}.5", branch["conv2"])]
        norms |= {f"{prefix}.2", f"{prefix}.6"}
    pairs += [(f"model.{10 + n}", convs["up1_conv"]), (f"model.{13 + n}", convs["up2_conv"]),
              (f"model.{17 + n}", convs["head_conv"])]
    return Plan(pairs, norms)


def _network_from_state_dict(tensors: dict, source: str, layout, make, plan, what: str):
    """The Keras network `make(*layout(...))` holding a state dict's weights (see _assign)."""
    tensors = _strip_data_parallel(tensors)
    network = make(*layout(tensors, source))
    network.build((None, None, None, 3))
    _assign(tensors, plan(network), source, what)
    return network


def generator_from_state_dict(tensors: dict, source: str):
    """The Keras ResnetGenerator holding an official generator state dict's weights."""
    from tfstyle.cyclegan.networks import ResnetGenerator
    return _network_from_state_dict(
        tensors, source, generator_layout,
        lambda ngf, n_blocks: ResnetGenerator(ngf=ngf, n_blocks=n_blocks), _generator_plan,
        "generator")


# -- discriminators -----------------------------------------------------------------------
def discriminator_layout(tensors: dict, source: str) -> tuple[int, int]:
    """(ndf, n_layers) of an official NLayerDiscriminator state dict."""
    ids = _conv_ids(tensors, r"model\.(\d+)\.weight")
    n_layers = len(ids) - 2
    first = tensors.get("model.0.weight")
    if (first is None or first.shape[2:] != (4, 4) or n_layers < 1
            or ids != [0] + [2 + 3 * k for k in range(n_layers + 1)]):
        if "model.1.weight" in tensors:
            raise PytorchImportError(f"{source}: a generator, not a PatchGAN discriminator")
        raise PytorchImportError(
            f"{source}: not an official PatchGAN (NLayerDiscriminator) state dict: 4x4 "
            f"convolutions at model.0, model.2, model.5, ... expected (keys: {_list(tensors)})")
    _need_rgb(source, "model.0.weight", first, "discriminators judge")
    return int(first.shape[0]), n_layers


def _discriminator_plan(discriminator) -> Plan:
    n = discriminator.n_layers
    convs = {layer.name: layer for layer in discriminator.body}
    pairs = [("model.0", convs["conv0"])]
    pairs += [(f"model.{2 + 3 * (k - 1)}", convs[f"conv{k}"]) for k in range(1, n + 1)]
    pairs += [(f"model.{2 + 3 * n}", convs["score"])]
    return Plan(pairs, {f"model.{3 + 3 * (k - 1)}" for k in range(1, n + 1)})


def discriminator_from_state_dict(tensors: dict, source: str):
    """The Keras PatchDiscriminator holding an official discriminator's weights."""
    from tfstyle.cyclegan.networks import PatchDiscriminator
    return _network_from_state_dict(
        tensors, source, discriminator_layout,
        lambda ndf, n_layers: PatchDiscriminator(ndf=ndf, n_layers=n_layers),
        _discriminator_plan, "discriminator")


# -- checking and assigning ---------------------------------------------------------------
def _torch_shape(kernel_shape) -> tuple:
    """PyTorch's weight shape for a Keras kernel: [kh, kw, a, b] -> [b, a, kh, kw] (Conv2D:
    a = in, b = out; Conv2DTranspose: a = out, b = in, as PyTorch's [in, out, kh, kw])."""
    kh, kw, a, b = kernel_shape
    return (b, a, kh, kw)


def _refusal(source: str, kind: str, unknown: set, norm_params: set, stale: set,
             missing: set) -> str | None:
    """The most specific reason a state dict does not map, or None when it does."""
    if norm_params or (stale and missing):
        keys = norm_params | stale | missing
        return (f"{source}: batch norm (norm='batch'): {_list(keys)} are normalisation "
                "parameters or statistics, or biases that batch-norm networks lack; tfstyle's "
                f"{kind}s use instance norm without affine parameters (norm='instance')")
    if unknown:
        return (f"{source}: unknown keys {_list(unknown)} (not in the official {kind} "
                "layout tfstyle maps)")
    if missing:
        return f"{source}: missing keys {_list(missing)}"
    return None


def _assign(tensors: dict, plan: Plan, source: str, kind: str) -> None:
    """Check every key against the plan, then copy the weights into the Keras layers."""
    expected = {}
    for prefix, layer in plan.convs:
        expected[f"{prefix}.weight"] = _torch_shape(layer.kernel.shape)
        expected[f"{prefix}.bias"] = tuple(layer.bias.shape)
    unknown, norm_params, stale = set(), set(), set()
    for key in tensors:
        if key in expected:
            continue
        prefix, _, leaf = key.rpartition(".")
        if prefix in plan.norms and leaf in STALE_NORM_BUFFERS:
            stale.add(key)
        elif prefix in plan.norms and leaf in ("weight", "bias"):
            norm_params.add(key)
        else:
            unknown.add(key)
    missing = set(expected) - set(tensors)
    reason = _refusal(source, kind, unknown, norm_params, stale, missing)
    if reason:
        raise PytorchImportError(reason)
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise PytorchImportError(
                f"{source}: {key} has shape {tuple(tensors[key].shape)} where the official "
                f"{kind} of this size has {shape}")
    bad = [key for key in expected if not np.all(np.isfinite(tensors[key]))]
    if bad:
        raise PytorchImportError(f"{source}: non-finite values (NaN or inf) in {_list(bad)}")
    for prefix, layer in plan.convs:
        weight = np.asarray(tensors[f"{prefix}.weight"], np.float32)
        layer.kernel.assign(np.transpose(weight, (2, 3, 1, 0)))
        layer.bias.assign(np.asarray(tensors[f"{prefix}.bias"], np.float32))


# -- the import ---------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read(path: Path) -> tuple[dict, dict]:
    """(the tensors of one .pth file, its record for info.json); no TensorFlow needed, so a
    file that cannot be read is refused at once."""
    tensors, fmt = load_state_dict(path)
    return tensors, {"pth": str(path.resolve()), "sha256": _sha256(path), "format": fmt}


def _network(build, tensors: dict, record: dict, path: Path):
    """(the Keras network `build` makes of the tensors, the record with its layout)."""
    from tfstyle.cyclegan.networks import count_params

    network = build(tensors, str(path))
    record = {**record, "parameters": count_params(network)}
    for name in ("ngf", "n_blocks", "ndf", "n_layers"):
        if hasattr(network, name):
            record[name] = getattr(network, name)
    return network, record


def _has_images(folder: Path) -> bool:
    from tfstyle.core.images import list_images

    return folder.is_dir() and bool(list_images(folder))


def _check_dataroot(settings: ImportSettings, domains: tuple[str, ...], run: bool) -> str | None:
    """The resolved --dataroot (None if not given), checked for images of `domains`."""
    if not settings.dataroot:
        return None
    root = Path(settings.dataroot)
    if not root.is_dir():
        raise PytorchImportError(f"--dataroot={settings.dataroot}: no such folder")
    splits = ("train",) if run else ("test", "train")
    for domain in domains:
        if not any(_has_images(root / f"{split}{domain}") for split in splits):
            raise PytorchImportError(
                f"--dataroot={settings.dataroot}: no images in "
                + " or ".join(f"{split}{domain}/" for split in splits)
                + (" to fine-tune on" if run else " to check the export against"))
    return str(root.resolve())


def _check_model_dir(settings: ImportSettings, directions) -> dict:
    """The model directory's existing info.json of earlier imports ({} if none); refuses a
    directory that is a file, holds a run or training results, or (unless --overwrite) a
    generator of a direction about to be written."""
    from tfstyle.cyclegan.generators import generators_dir, load_info

    model_dir = Path(settings.model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise PytorchImportError(f"--model_dir={settings.model_dir}: is a file")
    if (model_dir / "config.json").exists() or (model_dir / "checkpoints").exists():
        raise PytorchImportError(f"--model_dir={settings.model_dir}: holds a training run; "
                                 "import into a new --model_dir")
    info = load_info(model_dir) if (generators_dir(model_dir) / "info.json").is_file() else {}
    if info and info.get("source") != "pytorch":
        raise PytorchImportError(f"--model_dir={settings.model_dir}: holds generators trained "
                                 "by tfstyle; import into another --model_dir")
    for direction in directions:
        path = generators_dir(model_dir) / f"{direction}.keras"
        if path.exists() and not settings.overwrite:
            raise PytorchImportError(f"--model_dir={settings.model_dir}: {path} exists; pass "
                                     "--overwrite to replace it")
    return info


def _generator_info(previous: dict, imported: dict, dataroot: str | None, generator) -> dict:
    return {**previous, "block": "resnet", "ngf": generator.ngf, "n_blocks": generator.n_blocks,
            "norm_affine": False, "source": "pytorch",
            "dataroot": dataroot or previous.get("dataroot"),
            "imported": {**previous.get("imported", {}), **imported}}


def import_generator(settings: ImportSettings) -> dict:
    """One official generator state dict -> MODEL_DIR/generators/<direction>.keras."""
    from tfstyle.cyclegan.generators import generators_dir, save_generators

    pth = Path(settings.pth)
    tensors, record = _read(pth)
    previous = _check_model_dir(settings, [settings.direction])
    dataroot = _check_dataroot(settings, (settings.direction[0],), run=False)
    generator, record = _network(generator_from_state_dict, tensors, record, pth)
    info = _generator_info(previous, {settings.direction: record}, dataroot, generator)
    save_generators(settings.model_dir, {settings.direction: generator}, info)
    return {"kind": "generator", "model_dir": settings.model_dir,
            "written": [str(generators_dir(settings.model_dir) / f"{settings.direction}.keras")],
            "imported": {settings.direction: record}, "dataroot": info["dataroot"]}


def _folder_files(settings: ImportSettings) -> dict[str, Path]:
    folder = Path(settings.pth)
    files = {net: folder / f"{settings.epoch}_net_{net}.pth" for net in OFFICIAL_NETS}
    present = {net: path for net, path in files.items() if path.is_file()}
    lacking = [str(files[n]) for n in ("G_A", "G_B") if n not in present]
    if lacking:
        found = sorted(p.name for p in folder.glob("*_net_*.pth"))
        raise PytorchImportError(
            f"--pth={settings.pth}: no {', '.join(lacking)}; an official checkpoint folder "
            f"holds <epoch>_net_G_A.pth, _G_B, _D_A, _D_B (found: {', '.join(found) or 'none'}"
            f"; --epoch={settings.epoch})")
    discriminators = [n for n in ("D_A", "D_B") if n in present]
    if len(discriminators) == 1:
        other = "D_B" if discriminators == ["D_A"] else "D_A"
        raise PytorchImportError(f"--pth={settings.pth}: {files[other]} is missing (a run "
                                 "needs both discriminators)")
    return present


def import_folder(settings: ImportSettings) -> dict:
    """An official checkpoint folder: both generators, and with the discriminators a run
    that `python -m train.cyclegan --flagfile=MODEL_DIR/flags.txt` fine-tunes."""
    files = _folder_files(settings)
    read = {name: _read(path) for name, path in files.items()}
    if "D_A" in files:
        return _import_run(settings, files, read)
    from tfstyle.cyclegan.generators import generators_dir, save_generators

    previous = _check_model_dir(settings, DIRECTIONS)
    dataroot = _check_dataroot(settings, ("A", "B"), run=False)
    g, g_record = _network(generator_from_state_dict, *read["G_A"], files["G_A"])
    f, f_record = _network(generator_from_state_dict, *read["G_B"], files["G_B"])
    imported = {"AtoB": g_record, "BtoA": f_record}
    save_generators(settings.model_dir, {"AtoB": g, "BtoA": f},
                    _generator_info(previous, imported, dataroot, g))
    return {"kind": "generators", "model_dir": settings.model_dir,
            "written": [str(generators_dir(settings.model_dir) / f"{d}.keras")
                        for d in DIRECTIONS],
            "imported": imported, "dataroot": dataroot}


def _import_run(settings: ImportSettings, files: dict[str, Path], read: dict) -> dict:
    import tensorflow as tf

    from tfstyle.core.config import ConfigError, flagfile_text
    from tfstyle.core.files import atomic_path, write_text_atomic
    from tfstyle.core.training import Checkpoints, write_run_config
    from tfstyle.cyclegan.generators import save_generators
    from tfstyle.cyclegan.trainer import RESUME_KEYS, CycleGAN, CycleGANConfig

    model_dir = Path(settings.model_dir)
    if model_dir.exists() and (not model_dir.is_dir() or any(model_dir.iterdir())):
        raise PytorchImportError(f"--model_dir={settings.model_dir}: not empty; a run is "
                                 "imported into a new or empty folder")
    if not settings.dataroot:
        raise PytorchImportError(f"--dataroot: required to import {settings.pth} as a run "
                                 "(the folder with trainA/ and trainB/ to fine-tune on)")
    dataroot = _check_dataroot(settings, ("A", "B"), run=True)
    nets, records = {}, {}
    for name in OFFICIAL_NETS:
        build = generator_from_state_dict if name.startswith("G") else \
            discriminator_from_state_dict
        nets[name], records[name] = _network(build, *read[name], files[name])
    for a, b, what in (("G_A", "G_B", ("ngf", "n_blocks")), ("D_A", "D_B", ("ndf", "n_layers"))):
        for field in what:
            if records[a][field] != records[b][field]:
                raise PytorchImportError(
                    f"--pth={settings.pth}: {files[a].name} has {field} {records[a][field]}, "
                    f"{files[b].name} {records[b][field]}; a tfstyle run has one of each")
    try:
        config = CycleGANConfig(
            model_dir=str(model_dir), dataroot=dataroot, ngf=records["G_A"]["ngf"],
            n_blocks=records["G_A"]["n_blocks"], ndf=records["D_A"]["ndf"],
            n_layers_d=records["D_A"]["n_layers"], crop_size=settings.crop_size,
            load_size=settings.load_size, batch_size=settings.batch_size,
            pool_size=settings.pool_size)
    except ConfigError as err:
        raise PytorchImportError(str(err)) from None
    model = CycleGAN(config, tf.distribute.get_strategy())
    # G_A: A -> B is our G; the official D_A judges domain B (G_A's outputs): our D_B.
    for ours, theirs in ((model.G, "G_A"), (model.F, "G_B"), (model.D_B, "D_A"),
                         (model.D_A, "D_B")):
        ours.set_weights(nets[theirs].get_weights())
    imported = {"AtoB": records["G_A"], "BtoA": records["G_B"],
                "D_A": {**records["D_B"], "official_name": "D_B"},
                "D_B": {**records["D_A"], "official_name": "D_A"}}
    info = {**_generator_info({}, imported, dataroot, model.G),
            "crop_size": config.crop_size, "load_size": config.load_size, "step": 0,
            "epoch": 0}
    # The run appears whole or not at all: built next to MODEL_DIR, then renamed onto it
    # (an empty folder is replaced).
    with atomic_path(model_dir) as tmp:
        Checkpoints(model.checkpoint, tmp / "checkpoints", max_to_keep=config.keep_checkpoints
                    ).save(0)
        save_generators(tmp, {"AtoB": model.G, "BtoA": model.F}, info)
        write_run_config(tmp, config, RESUME_KEYS)
        write_text_atomic(tmp / "flags.txt", flagfile_text(config))
    return {"kind": "run", "model_dir": settings.model_dir,
            "written": [str(model_dir / p) for p in ("checkpoints", "generators",
                                                     "config.json", "flags.txt")],
            "imported": imported, "dataroot": dataroot}


def import_pytorch(settings: ImportSettings) -> dict:
    """Import settings.pth (a state dict file or an official checkpoint folder) into
    settings.model_dir; returns a summary (kind, files written, what was imported).
    PytorchImportError or pth_reader.PthError name what cannot be imported and why."""
    pth = Path(settings.pth)
    if pth.is_dir():
        return import_folder(settings)
    if not pth.is_file():
        raise PytorchImportError(f"--pth={settings.pth}: no such file or folder")
    return import_generator(settings)

