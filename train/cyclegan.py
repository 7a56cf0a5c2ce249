"""Train CycleGAN, CycleSE or CycleDA.

    python -m train.cyclegan --flagfile=configs/demo.flags
    python -m train.cyclegan --dataroot=DATA --model_dir=runs/x --block=se --lambda_cycle=1.35

DATA holds trainA/ and trainB/ (and optionally testA/ testB/ for per-epoch samples).
Re-running the same command resumes from the last checkpoint in --model_dir. Every flag is a
field of tfstyle.cyclegan.trainer.CycleGANConfig (`--helpfull` lists them).
"""

import sys

from absl import app, logging

from tfstyle.core.config import define_flags, run_job
from tfstyle.cyclegan.trainer import CycleGANConfig

define_flags(CycleGANConfig)


def main(argv):
    from tfstyle.core.training import RUN_ERRORS
    from tfstyle.cyclegan.trainer import train
    config, summary = run_job(argv, CycleGANConfig,
                              lambda c, text: train(c, flags_text=text), RUN_ERRORS)
    logging.info("done: %s", {k: v for k, v in summary.items() if k != "skipped"})
    print(f"\nTrained {summary['steps']} steps ({summary['epochs']} epochs) in "
          f"{summary['seconds']:.0f} s; A: {summary['images_A']} images, "
          f"B: {summary['images_B']} images, {len(summary['skipped'])} files skipped"
          + (": " + ", ".join(summary["skipped"]) if summary["skipped"] else "") + ".")
    print(f"Generators: {config.model_dir}/generators/  samples: {config.model_dir}/samples/  "
          f"TensorBoard: tensorboard --logdir {config.model_dir}/logs")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
