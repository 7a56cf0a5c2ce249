"""Train the attention-aware VGG19 auto-encoder (CBAM seed; AAMS self-attention; none).

    python -m train.autoencoder --flagfile=configs/autoencoder_demo.flags
    python -m train.autoencoder --flagfile=configs/autoencoder_seed.flags \
        --content_dir=/data/coco/train2014 --model_dir=runs/cbam_relu4_1

Re-running the same command resumes from the last checkpoint in --model_dir. The trained
model lands in MODEL_DIR/autoencoder/; stylize with python -m tfstyle.stylize. Every flag is
a field of tfstyle.style.trainer.AutoencoderConfig (`--helpfull` lists them).
"""

import sys

from absl import app, logging

from tfstyle.core.config import define_flags, run_job
from tfstyle.style.trainer import AutoencoderConfig

define_flags(AutoencoderConfig)


def main(argv):
    from tfstyle.core.training import RUN_ERRORS
    from tfstyle.core.vgg import VGGWeightsUnavailableError
    from tfstyle.style.trainer import train
    config, summary = run_job(argv, AutoencoderConfig, lambda c, text: train(c, flags_text=text),
                              (VGGWeightsUnavailableError, FileNotFoundError, *RUN_ERRORS))
    logging.info("done: %s", summary)
    print(f"\nTrained {summary['steps']} steps on {summary['images']} content images in "
          f"{summary['seconds']:.0f} s ({len(summary['skipped'])} unreadable files skipped); "
          f"VGG19 weights: {summary['vgg_weights']}.")
    if summary["vgg_weights"] == "random":
        print("WARNING: the encoder has random VGG19 weights, so the attention maps and "
              "stylizations are not meaningful (see the warning above for how to supply "
              "ImageNet weights).")
    print(f"Auto-encoder: {config.model_dir}/autoencoder/  TensorBoard: tensorboard --logdir "
          f"{config.model_dir}/logs")
    if "samples" in summary:
        print(f"Stylized example: {summary['samples']}")
    print(f"Stylize: python -m tfstyle.stylize --model_dir={config.model_dir} "
          "--content=IMG --style=IMG --out=OUT.png")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
