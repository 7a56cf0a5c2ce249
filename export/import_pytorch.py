r"""Import the official PyTorch CycleGAN's pretrained generators and training checkpoints.

    python -m export.import_pytorch --pth=horse2zebra.pth --model_dir=runs/horse2zebra \
        --direction=AtoB [--dataroot=datasets/horse2zebra]
    python -m export.import_pytorch --pth=checkpoints/horse2zebra --model_dir=runs/h2z_tuned \
        --dataroot=datasets/horse2zebra [--epoch=latest]

A state dict file becomes MODEL_DIR/generators/<direction>.keras + info.json (what
`tfstyle.translate`, `export.generators` and `tfstyle.evaluate` read); a checkpoint folder of the
official train.py gives both generators and, with its discriminators, a run that
`python -m train.cyclegan --flagfile=MODEL_DIR/flags.txt` fine-tunes. No PyTorch needed; the
file is read as tensors only (docs/pretrained.md). Every flag is a field of
tfstyle.cyclegan.pytorch_import.ImportSettings.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from absl import app  # noqa: E402

from tfstyle.core.config import define_flags, run_job  # noqa: E402
from tfstyle.cyclegan.pytorch_import import ImportSettings  # noqa: E402

define_flags(ImportSettings)


def main(argv):
    from tfstyle.cyclegan.pth_reader import PthError
    from tfstyle.cyclegan.pytorch_import import PytorchImportError, import_pytorch
    settings, summary = run_job(argv, ImportSettings, lambda s, _: import_pytorch(s),
                                (PthError, PytorchImportError))
    for name, record in summary["imported"].items():
        layout = (f"ngf {record['ngf']}, {record['n_blocks']} residual blocks" if "ngf" in record
                  else f"ndf {record['ndf']}, {record['n_layers']} layers")
        official = f" (the official {record['official_name']})" if "official_name" in record \
            else ""
        print(f"{name}{official}: {record['pth']} ({record['format']} format; {layout}; "
              f"{record['parameters']:,} parameters)")
    print("wrote " + ", ".join(summary["written"]))
    if summary["kind"] == "run":
        print(f"fine-tune: python -m train.cyclegan --flagfile={settings.model_dir}/flags.txt "
              "--epochs=N --decay_epochs=M")
    if not summary["dataroot"]:
        print("no --dataroot: pass export.generators --dataroot=<folder with test/train images> "
              "for its checks")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
