"""Importing the official PyTorch CycleGAN's networks (export.import_pytorch).

The PyTorch side is written here, to the official key layout (`model.N...`, residual blocks
`model.N.conv_block.M`): small generators and discriminators with weights of a trained-like
scale, saved by torch.save in both of its formats. The imported Keras networks must give the
torch modules' outputs to 1e-4; a checkpoint folder must give a run that train.cyclegan
resumes from the imported weights; what does not map, and a pickle that would run code, are
refused by name.

Run as a script, it measures the agreement of a full-size (ngf 64, 9 blocks) generator
through import, SavedModel and LiteRT (docs/pretrained.md):

    python tests/test_import_pytorch.py [--ngf=64] [--n_blocks=9] [--reference_dir=PATH]

With --reference_dir (a checkout of the official code, e.g. zenml-io/pytorch-CycleGAN-and-
pix2pix) the generator is the official `networks.define_G` itself, and its state dict's keys and
shapes are checked against the module written here.
"""

import collections
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

# PyTorch writes the test's .pth files. Without it these tests skip, except in CI (CI set,
# as .ci/run does), where they must run: .ci/run installs torch==2.13.0 (CPU).
try:
    import torch
    from torch import nn
except ImportError:
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        raise
    pytest.skip("PyTorch is not installed (pip install torch==2.13.0, the CPU build)",
                allow_module_level=True)

from tfstyle.core import synthetic
from tfstyle.cyclegan import generators, pytorch_import, trainer
from tfstyle.cyclegan.pth_reader import LEGACY_MAGIC, LEGACY_PROTOCOL, PthError, load_state_dict
from tfstyle.cyclegan.pytorch_import import ImportSettings, PytorchImportError, import_pytorch

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
TOL = 1e-4  # outputs in [-1, 1]


# -- the official networks, written to the official key layout ------------------------------
class OfficialResnetBlock(nn.Module):
    def __init__(self, dim, norm, bias, dropout):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm(dim),
                  nn.ReLU(True)]
        layers += [nn.Dropout(0.5)] if dropout else []
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class OfficialResnetGenerator(nn.Module):
    """c7s1-ngf, two stride-2 convs, residual blocks, two transposed convs, c7s1-3, tanh."""

    def __init__(self, ngf=4, n_blocks=2, batch_norm=False, dropout=False):
        super().__init__()
        norm = nn.BatchNorm2d if batch_norm else nn.InstanceNorm2d
        bias = not batch_norm  # the official networks drop conv biases before batch norm
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=bias), norm(ngf),
                  nn.ReLU(True)]
        for c in (ngf, 2 * ngf):
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), norm(2 * c),
                       nn.ReLU(True)]
        layers += [OfficialResnetBlock(4 * ngf, norm, bias, dropout) for _ in range(n_blocks)]
        for c in (4 * ngf, 2 * ngf):
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=bias), norm(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class OfficialPatchDiscriminator(nn.Module):
    def __init__(self, ndf=4, n_layers=3):
        super().__init__()
        layers, mult = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)], 1
        for n in range(1, n_layers + 1):
            previous, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * previous, ndf * mult, 4, 2 if n < n_layers else 1, 1),
                       nn.InstanceNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def trained_like(module, seed):
    """Weights of a trained network's scale (std 1/sqrt(fan in), biases 0.1), so that the
    outputs span [-1, 1] rather than sitting near 0 as at the N(0, 0.02) initialisation."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else \
                    m.weight.shape[0] * m.weight.shape[2] * m.weight.shape[3]
                m.weight.normal_(0, fan_in ** -0.5, generator=generator)
                if m.bias is not None:
                    m.bias.normal_(0, 0.1, generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(1, 0.1, generator=generator)
                m.running_mean.normal_(0, 0.1, generator=generator)
    return module.eval()


def torch_output(module, x):
    """NHWC numpy in, NHWC numpy out, through the NCHW torch module."""
    with torch.no_grad():
        return module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)


def photo_like(height, width, seed=0):
    """[1, H, W, 3] in [-1, 1]: smooth gradients and a disc, like a photo, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([np.sin(xx * 5 + 1), np.cos(yy * 4), np.sin((xx + yy) * 3)], -1)
    image[(yy - 0.5) ** 2 + (xx - 0.4) ** 2 < 0.04] = (0.8, -0.6, 0.1)
    return np.clip(image + rng.normal(0, 0.03, image.shape), -1, 1)[None].astype(np.float32)


def save(state, path, fmt="zip"):
    torch.save(state, path, _use_new_zipfile_serialization=fmt == "zip")
    return path


def max_error(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def torch_generator():
    return trained_like(OfficialResnetGenerator(ngf=4, n_blocks=2), seed=1)


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory):
    return synthetic.make_dataset(tmp_path_factory.mktemp("data"), train=4, test=2, size=40)


# -- state dicts -> generators -------------------------------------------------------------
def test_both_formats_import_with_parity_and_complete_a_model_dir(torch_generator, tmp_path):
    other = trained_like(OfficialResnetGenerator(ngf=8, n_blocks=1), seed=2)
    files = {"AtoB": save(torch_generator.state_dict(), tmp_path / "g.pth", "zip"),
             "BtoA": save(other.state_dict(), tmp_path / "f.pth", "legacy")}
    model_dir = tmp_path / "run"
    for direction, pth in files.items():
        import_pytorch(ImportSettings(pth=str(pth), model_dir=str(model_dir),
                                      direction=direction))
    info = generators.load_info(model_dir)
    assert info["source"] == "pytorch" and info["block"] == "resnet"
    assert {d: (r["format"], r["ngf"], r["n_blocks"]) for d, r in info["imported"].items()} \
        == {"AtoB": ("zip", 4, 2), "BtoA": ("legacy", 8, 1)}
    for direction, module in (("AtoB", torch_generator), ("BtoA", other)):
        keras_model = generators.load_generator(model_dir, direction)
        for height, width in ((256, 256), (200, 320)):
            x = photo_like(height, width)
            reference = torch_output(module, x)
            assert reference.std() > 0.3  # the outputs span the range
            assert max_error(keras_model(x), reference) <= TOL, (direction, height, width)
    with pytest.raises(PytorchImportError, match="AtoB.keras exists; pass --overwrite"):
        import_pytorch(ImportSettings(pth=str(files["BtoA"]), model_dir=str(model_dir)))
    import_pytorch(ImportSettings(pth=str(files["BtoA"]), model_dir=str(model_dir),
                                  overwrite=True))
    replaced = generators.load_generator(model_dir, "AtoB")
    x = photo_like(32, 48)
    assert max_error(replaced(x), torch_output(other, x)) <= TOL


def test_older_and_data_parallel_files_import(torch_generator, tmp_path):
    """PyTorch < 0.4 saved running statistics of parameter-free instance norms (the official
    loader drops them, so do we); nn.DataParallel prefixes every key with 'module.'."""
    state = collections.OrderedDict()
    for key, value in torch_generator.state_dict().items():
        state[f"module.{key}"] = value
    for norm in ("model.2", "model.11.conv_block.2", "model.13"):
        state[f"module.{norm}.running_mean"] = torch.zeros(8)
        state[f"module.{norm}.running_var"] = torch.ones(8)
    pth = save(state, tmp_path / "old.pth", "legacy")
    generator = pytorch_import.generator_from_state_dict(load_state_dict(pth)[0], str(pth))
    x = photo_like(64, 40)
    assert max_error(generator(x), torch_output(torch_generator, x)) <= TOL


def numpy_state(module):
    return {k: v.numpy() for k, v in module.state_dict().items()}


def test_layout_is_inferred_from_shapes():
    for ngf, n_blocks in ((6, 3), (64, 9), (32, 0)):
        state = numpy_state(OfficialResnetGenerator(ngf=ngf, n_blocks=n_blocks))
        assert pytorch_import.generator_layout(state, "g") == (ngf, n_blocks)
    for ndf, n_layers in ((5, 2), (64, 3), (8, 5)):
        state = numpy_state(OfficialPatchDiscriminator(ndf=ndf, n_layers=n_layers))
        assert pytorch_import.discriminator_layout(state, "d") == (ndf, n_layers)


def without(state, *keys):
    return collections.OrderedDict((k, v) for k, v in state.items() if k not in keys)


def replaced(state, **tensors):
    return collections.OrderedDict(state, **{k.replace("_", "."): v for k, v in tensors.items()})


REFUSALS = {
    "unet": (lambda g: {"model.model.0.weight": torch.zeros(4, 3, 4, 4),
                        "model.model.1.model.1.weight": torch.zeros(8, 4, 4, 4)},
             r"a U-Net generator \(keys model.model.0.weight, model.model.1.model.1.weight\)"),
    "batch_norm": (lambda g: OfficialResnetGenerator(batch_norm=True).state_dict(),
                   r"batch norm \(norm='batch'\): model.1.bias, model.2.bias, "
                   r"model.2.num_batches_tracked, model.2.running_mean, model.2.running_var, "
                   r"model.2.weight \(\+\d+ more\)"),
    "dropout": (lambda g: OfficialResnetGenerator(dropout=True).state_dict(),
                r"dropout in the residual blocks \(use_dropout: model.10.conv_block.6.weight, "
                r"model.11.conv_block.6.weight follow a Dropout layer\)"),
    "unknown": (lambda g: replaced(g.state_dict(), model_9_weight=torch.zeros(3),
                                   extra_scale=torch.zeros(1)),
                r"unknown keys extra.scale, model.9.weight \(not in the official generator"),
    "missing": (lambda g: without(g.state_dict(), "model.4.bias"), r"missing keys model.4.bias$"),
    "not_finite": (lambda g: replaced(g.state_dict(), model_4_bias=torch.full((8,), np.nan)),
                   r"non-finite values \(NaN or inf\) in model.4.bias$"),
    "discriminator": (lambda g: OfficialPatchDiscriminator().state_dict(),
                      r"a PatchGAN discriminator \(model.0.weight \(4, 3, 4, 4\)\), not a "
                      r"generator"),
    "grayscale": (lambda g: replaced(g.state_dict(), model_1_weight=torch.zeros(4, 1, 7, 7)),
                  r"model.1.weight takes 1 input channels"),
    "shape": (lambda g: replaced(g.state_dict(), model_19_weight=torch.zeros(3, 4, 5, 5)),
              r"model.19.weight has shape \(3, 4, 5, 5\) where the official generator of this "
              r"size has \(3, 4, 7, 7\)"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_what_does_not_map_is_refused_by_name(case, torch_generator, tmp_path):
    make, pattern = REFUSALS[case]
    pth = save(make(torch_generator), tmp_path / f"{case}.pth")
    with pytest.raises(PytorchImportError, match=pattern) as caught:
        import_pytorch(ImportSettings(pth=str(pth), model_dir=str(tmp_path / "out")))
    assert str(caught.value).startswith(f"{pth}: ") and "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()


# -- the reader --------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_the_reader_gives_back_what_torch_wrote(fmt, tmp_path):
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(5, 6, generator=generator)
    state = collections.OrderedDict(
        weight=torch.randn(4, 3, 7, 7, generator=generator), transposed=base.t(),
        sliced=base[1:4, ::2], half=base.half(), bfloat=base.bfloat16(), double=base.double(),
        steps=torch.tensor(7), empty=torch.zeros(0, 3), flags=base > 0,
        parameter=nn.Parameter(torch.ones(2)))
    tensors, found = load_state_dict(save(state, tmp_path / "t.pth", fmt))
    assert found == fmt and list(tensors) == list(state)
    for name, value in state.items():
        expected = value.detach().float().numpy() if value.dtype == torch.bfloat16 else \
            value.detach().numpy()
        assert tensors[name].shape == expected.shape, name
        np.testing.assert_array_equal(tensors[name].astype(expected.dtype), expected, name)


# -- hostile files -------------------------------------------------------------------------
class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile_files(folder: Path, marker: Path) -> dict:
    """Files that run `touch marker` when unpickled by plain pickle (or torch.load without
    weights_only): in each format, inside a state dict, and a legacy file whose very first
    pickles (system facts, before any state dict) carry the call."""
    state = {"model.1.weight": torch.zeros(4, 3, 7, 7), "payload": RunsCode(marker)}
    files = {fmt: save(state, folder / f"{fmt}.pth", fmt) for fmt in ("zip", "legacy")}
    early = folder / "early.pth"
    with open(early, "wb") as f:
        for item in (LEGACY_MAGIC, LEGACY_PROTOCOL, RunsCode(marker)):
            pickle.dump(item, f, protocol=2)
    files["early"] = early
    plain = folder / "plain.pth"
    plain.write_bytes(pickle.dumps(RunsCode(marker)))
    files["plain"] = plain
    return files


def test_a_pickle_that_runs_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    for fmt, path in hostile_files(tmp_path, marker).items():
        with pytest.raises(PthError) as caught:
            load_state_dict(path)
        assert str(caught.value).startswith(str(path)), fmt
        assert ("refused: it names posix.system" in str(caught.value)
                or "refused: it names os.system" in str(caught.value)), (fmt, caught.value)
    assert not marker.exists()


def test_truncated_and_foreign_files_are_refused(torch_generator, tmp_path):
    good = save(torch_generator.state_dict(), tmp_path / "good.pth", "legacy")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(PthError, match=r"cut.pth: storage '\d+' claims \d+ elements, more "
                                       r"than the file holds"):
        load_state_dict(cut)
    whole = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": torch_generator.state_dict()}, whole)
    with pytest.raises(PthError, match="entries epoch, state_dict are not tensors"):
        load_state_dict(whole)
    text = tmp_path / "notes.pth"
    text.write_text("not a model")
    with pytest.raises(PthError, match="notes.pth: not a readable torch.save file"):
        load_state_dict(text)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "export.import_pytorch", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=ENV)


def test_cli_errors_are_one_line_and_write_nothing(tmp_path):
    marker = tmp_path / "ran"
    hostile = hostile_files(tmp_path, marker)["zip"]
    out = tmp_path / "out"
    cases = [((f"--pth={hostile}", f"--model_dir={out}"), "refused: it names posix.system"),
             ((f"--pth={tmp_path / 'none.pth'}", f"--model_dir={out}"),
              "--pth=.*none.pth: no such file or folder"),
             ((f"--pth={hostile}", f"--model_dir={out}", "--direction=sideways"),
              "--direction"),
             ((f"--model_dir={out}",), "--pth")]
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode != 0, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines()
                  if line.startswith(("error:", "FATAL"))]
        assert len(errors) == 1 and re.search(message, errors[0]), result.stderr
    assert not out.exists() and not marker.exists()


# -- a checkpoint folder -> a run that fine-tunes -------------------------------------------
@pytest.fixture(scope="module")
def official_run(tmp_path_factory, torch_generator):
    folder = tmp_path_factory.mktemp("checkpoints")
    nets = {"G_A": torch_generator,
            "G_B": trained_like(OfficialResnetGenerator(ngf=4, n_blocks=2), seed=3),
            "D_A": trained_like(OfficialPatchDiscriminator(ndf=4, n_layers=3), seed=4),
            "D_B": trained_like(OfficialPatchDiscriminator(ndf=4, n_layers=3), seed=5)}
    for i, (name, net) in enumerate(nets.items()):
        save(net.state_dict(), folder / f"latest_net_{name}.pth", ("zip", "legacy")[i % 2])
    return folder, nets


@pytest.fixture(scope="module")
def imported_run(official_run, dataroot, tmp_path_factory):
    folder, _ = official_run
    model_dir = tmp_path_factory.mktemp("runs") / "tuned"
    summary = import_pytorch(ImportSettings(
        pth=str(folder), model_dir=str(model_dir), dataroot=str(dataroot), crop_size=32,
        load_size=36, pool_size=2))
    assert summary["kind"] == "run"
    return model_dir


def test_checkpoint_folder_becomes_a_run_of_the_imported_networks(official_run, imported_run):
    _, nets = official_run
    config = trainer.CycleGANConfig(**json.loads((imported_run / "config.json").read_text()))
    assert (config.ngf, config.n_blocks, config.ndf, config.n_layers_d) == (4, 2, 4, 3)
    # G = G_A, F = G_B; our D_A judges A: the official D_B (and D_B the official D_A); a fresh
    # optimizer state (Adam moments zero) and step.
    model = trainer.CycleGAN(config, tf.distribute.get_strategy())
    model.checkpoint.restore(str(imported_run / "checkpoints" / "ckpt-0")).assert_consumed()
    x = photo_like(32, 32)
    for ours, theirs in ((model.G, "G_A"), (model.F, "G_B"), (model.D_A, "D_B"),
                         (model.D_B, "D_A")):
        assert max_error(ours(x), torch_output(nets[theirs], x)) <= TOL, theirs
    assert int(model.opt_G.iterations.numpy()) == 0 and int(model.step.numpy()) == 0
    moments = [v for v in model.opt_G.variables if v.path.endswith(("_momentum", "_velocity"))]
    assert len(moments) == 2 * len(model.g_vars) and not any(np.any(v.numpy()) for v in moments)
    info = generators.load_info(imported_run)
    assert info["imported"]["D_A"]["official_name"] == "D_B" and info["step"] == 0
    for direction, theirs in (("AtoB", "G_A"), ("BtoA", "G_B")):
        written = generators.load_generator(imported_run, direction)
        assert max_error(written(x), torch_output(nets[theirs], x)) <= TOL, direction


def test_train_cyclegan_with_the_written_flagfile_fine_tunes_the_imported_weights(
        official_run, imported_run, tmp_path):
    """After one step at a learning rate of 1e-9 the generators are still the imported ones:
    the run resumed from ckpt-0 (a fresh start would give random generators)."""
    from absl import flags

    from tfstyle.core.config import define_flags, from_flags
    _, nets = official_run
    model_dir = tmp_path / "tuned"
    shutil.copytree(imported_run, model_dir)
    fv = flags.FlagValues()
    define_flags(trainer.CycleGANConfig, fv)
    fv([__file__, f"--flagfile={model_dir / 'flags.txt'}", f"--model_dir={model_dir}",
        "--max_steps=1", "--lr=1e-9", "--epochs=1", "--decay_epochs=0", "--num_samples=0",
        "--nojit_compile"])
    config, _ = from_flags(trainer.CycleGANConfig, fv)
    result = trainer.train(config)
    assert result["steps"] == 1 and result["resumed_from"].endswith("ckpt-0")
    x = photo_like(32, 32)
    for direction, theirs in (("AtoB", "G_A"), ("BtoA", "G_B")):
        after = generators.load_generator(model_dir, direction)
        assert max_error(after(x), torch_output(nets[theirs], x)) <= TOL, direction


def test_a_run_needs_data_both_discriminators_and_a_new_folder(official_run, dataroot,
                                                                tmp_path):
    folder, _ = official_run
    with pytest.raises(PytorchImportError, match="--dataroot: required"):
        import_pytorch(ImportSettings(pth=str(folder), model_dir=str(tmp_path / "a")))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(PytorchImportError, match="not empty"):
        import_pytorch(ImportSettings(pth=str(folder), model_dir=str(busy),
                                      dataroot=str(dataroot)))
    assert (busy / "notes.txt").read_text() == "mine"
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("G_A", "G_B", "D_A"):
        (partial / f"latest_net_{name}.pth").write_bytes(
            (folder / f"latest_net_{name}.pth").read_bytes())
    with pytest.raises(PytorchImportError, match="latest_net_D_B.pth is missing"):
        import_pytorch(ImportSettings(pth=str(partial), model_dir=str(tmp_path / "b"),
                                      dataroot=str(dataroot)))
    with pytest.raises(PytorchImportError, match=r"no .*200_net_G_A.pth.*found: "
                                                 r"latest_net_D_A.pth"):
        import_pytorch(ImportSettings(pth=str(partial), model_dir=str(tmp_path / "c"),
                                      epoch="200"))


# -- the round trip: import, translate, export, LiteRT -------------------------------------
def test_round_trip_import_translate_export_litert(torch_generator, dataroot, tmp_path):
    from tfstyle.core.images import from_model_range, to_model_range, to_uint8
    from tfstyle.cyclegan.translator import Translator
    from tfstyle.deploy import litert, saved_model

    pth = save(torch_generator.state_dict(), tmp_path / "latest_net_G.pth", "legacy")
    model_dir = tmp_path / "pretrained"
    result = run_cli(f"--pth={pth}", f"--model_dir={model_dir}", "--direction=BtoA",
                     f"--dataroot={dataroot}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "BtoA: " in result.stdout and "ngf 4, 2 residual blocks" in result.stdout

    x = photo_like(200, 320, seed=3)
    reference = torch_output(torch_generator, x)[0]
    photo = to_uint8(x[0])
    translated = Translator(generators.load_generator(model_dir, "BtoA"))(photo)
    expected = to_uint8(torch_output(torch_generator, to_model_range(photo[None]))[0])
    assert max_error(translated, expected) <= 1  # a rounding step at most

    out = tmp_path / "exported"
    export = subprocess.run(
        [sys.executable, "-m", "export.generators", f"--model_dir={model_dir}",
         f"--out_dir={out}", "--tflite=float32", "--tflite_size=32", "--check_images=2",
         "--latency_runs=1"], cwd=REPO, capture_output=True, text=True, timeout=600, env=ENV)
    assert export.returncode == 0, export.stdout[-2000:] + export.stderr[-2000:]
    report = json.loads((out / "export_report.json").read_text())
    kinds = {a["kind"]: a for a in report["artifacts"]}
    assert set(kinds) == {"savedmodel", "tflite"}
    for artifact in kinds.values():
        assert artifact["status"] == "ok" and artifact["agreement"]["psnr_db"] >= \
            artifact["threshold_db"] >= 45

    # Against the torch module itself: the SavedModel at 200x320, the LiteRT file at 32x32.
    served = saved_model.LoadedSavedModel(out / "serving" / "pretrained_BtoA" / "1")
    pixels = from_model_range(x)
    assert max_error(served.translate_pixels(pixels)[0] / 127.5 - 1, reference) <= TOL
    lite = litert.LiteModel((out / "tflite" / "pretrained_BtoA_float32.tflite").read_bytes(),
                            "float32")
    small = photo_like(32, 32, seed=4)
    assert max_error(lite.run(from_model_range(small[0])) / 127.5 - 1,
                     torch_output(torch_generator, small)[0]) <= TOL


# -- measurement for docs/pretrained.md ------------------------------------------------------
def _official_networks(reference_dir: str, ngf: int, n_blocks: int):
    """The official networks.define_G (resnet, instance norm, no dropout) and define_D
    (basic PatchGAN), checked to have the keys and shapes of the modules written here."""
    sys.path.insert(0, reference_dir)
    from models import networks  # the reference's

    g = networks.define_G(3, 3, ngf, f"resnet_{n_blocks}blocks", norm="instance",
                          use_dropout=False, gpu_ids=[])
    d = networks.define_D(3, ngf, "basic", norm="instance", gpu_ids=[])
    for theirs, ours in ((g, OfficialResnetGenerator(ngf, n_blocks)),
                         (d, OfficialPatchDiscriminator(ngf, 3))):
        assert [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()] == \
            [(k, tuple(v.shape)) for k, v in ours.state_dict().items()], "key layouts differ"
    return g, d


def measure(ngf: int, n_blocks: int, reference_dir: str | None) -> None:
    """Print the agreement tables of docs/pretrained.md."""
    from tfstyle.core.images import from_model_range
    from tfstyle.deploy import litert, saved_model

    module, critic = _official_networks(reference_dir, ngf, n_blocks) if reference_dir else \
        (OfficialResnetGenerator(ngf, n_blocks), OfficialPatchDiscriminator(ngf, 3))
    module, critic = trained_like(module, seed=0), trained_like(critic, seed=1)
    source = "networks.define_G/define_D of the official code" if reference_dir else \
        "the official-layout modules of these tests"
    print(f"PyTorch {torch.__version__}, {source}; ngf = ndf = {ngf}, {n_blocks} blocks, "
          "trained-like weights\n")
    print("| tfstyle side | size | max abs error vs the torch module (outputs in [-1, 1]) |\n"
          "|---|---|---:|")
    sizes = ((256, 256), (200, 320))
    inputs = {size: photo_like(*size) for size in sizes}
    expected = {size: torch_output(module, x) for size, x in inputs.items()}

    def row(label, size, output):
        print(f"| {label} | {size[0]}x{size[1]} | "
              f"{max_error(np.reshape(output, expected[size].shape), expected[size]):.2e} |")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = synthetic.make_dataset(tmp / "data", train=4, test=4, size=256)
        for fmt in ("zip", "legacy"):
            pth = save(module.state_dict(), tmp / f"{fmt}.pth", fmt)
            model_dir = tmp / f"m_{fmt}"
            import_pytorch(ImportSettings(pth=str(pth), model_dir=str(model_dir),
                                          dataroot=str(data)))
            keras_model = generators.load_generator(model_dir, "AtoB")
            for size, x in inputs.items():
                row(f"Keras generator ({fmt} file)", size, keras_model(x))
        d = pytorch_import.discriminator_from_state_dict(numpy_state(critic), "D")
        x = inputs[sizes[0]]
        print(f"| Keras PatchGAN discriminator | 256x256 | "
              f"{max_error(d(x), torch_output(critic, x)):.2e} |")
        out = tmp / "exported"
        export = subprocess.run(
            [sys.executable, "-m", "export.generators", f"--model_dir={model_dir}",
             f"--out_dir={out}", "--name=m", "--tflite=float32", "--latency_runs=1"],
            cwd=REPO, env=ENV, capture_output=True, text=True)
        if export.returncode:
            sys.exit(export.stdout[-3000:] + export.stderr[-3000:])
        served = saved_model.LoadedSavedModel(out / "serving" / "m_AtoB" / "1")
        for size, x in inputs.items():
            row("SavedModel serving_default", size,
                served.translate_pixels(from_model_range(x)) / 127.5 - 1)
        lite = litert.LiteModel((out / "tflite" / "m_AtoB_float32.tflite").read_bytes(),
                                "float32")
        x = inputs[sizes[0]]
        row("LiteRT float32 file", sizes[0], lite.run(from_model_range(x[0])) / 127.5 - 1)
        report = json.loads((out / "export_report.json").read_text())
        print("\n| export.generators artifact | PSNR vs Keras (dB) | threshold (dB) |\n"
              "|---|---:|---:|")
        for a in report["artifacts"]:
            print(f"| {a['artifact']} | {a['agreement']['psnr_db']:.2f} | "
                  f"{a['threshold_db']:g} |")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--n_blocks", type=int, default=9)
    parser.add_argument("--reference_dir", help="checkout of the official code")
    arguments = parser.parse_args()
    measure(arguments.ngf, arguments.n_blocks, arguments.reference_dir)
