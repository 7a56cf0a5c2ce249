"""Distill a trained CycleGAN-family generator into a small (by default mobile) student.

    python -m train.distill --flagfile=configs/distill_synthetic.flags
    python -m train.distill --teacher=runs/caricature_se --direction=AtoB \\
        --dataroot=data/caricature --model_dir=runs/caricature_mobile

The student learns the teacher's translation of the source domain's images (trainA for
AtoB): an L1 loss to the teacher's output, feature losses to its bottleneck activations
through learned 1x1 maps, and a GAN loss against its outputs, each weighted by a flag.
Re-running the same command resumes from the last checkpoint in --model_dir. The result is a
normal model dir (generators/<direction>.keras + info.json) for translate and export. Every
flag is a field of tfstyle.cyclegan.distill.DistillConfig (`--helpfull` lists them); see
docs/mobile.md.
"""

import sys

from absl import app, logging

from tfstyle.core.config import define_flags, run_job
from tfstyle.cyclegan.distill import DistillConfig

define_flags(DistillConfig)


def main(argv):
    from tfstyle.core.training import RUN_ERRORS
    from tfstyle.cyclegan.distill import TeacherError, train
    config, summary = run_job(argv, DistillConfig, lambda c, text: train(c, flags_text=text),
                              (*RUN_ERRORS, TeacherError))
    logging.info("done: %s", {k: v for k, v in summary.items() if k != "skipped"})
    print(f"\nDistilled {summary['steps']} steps ({summary['epochs']} epochs) in "
          f"{summary['seconds']:.0f} s; {len(summary['skipped'])} files skipped"
          + (": " + ", ".join(summary["skipped"]) if summary["skipped"] else "") + ".")
    for direction, check in summary["heldout"].items():
        if check["images"]:
            print(f"{direction}: student vs teacher on {check['images']} held-out images: "
                  f"PSNR {check['psnr_db']:.2f} dB, SSIM {check['ssim']:.4f}")
    print(f"Student: {config.model_dir}/generators/  samples: {config.model_dir}/samples/  "
          f"TensorBoard: tensorboard --logdir {config.model_dir}/logs")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
