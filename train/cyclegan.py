"""Train CycleGAN, CycleSE or CycleDA.

    python -m train.cyclegan --flagfile=configs/demo.flags
    python -m train.cyclegan --dataroot=DATA --model_dir=runs/x --block=se --lambda_cycle=1.35

DATA holds trainA/ and trainB/ (and optionally testA/ testB/ for per-epoch samples).
Re-running the same command resumes from the last checkpoint in --model_dir.
"""

import sys

from absl import app, flags, logging

from tfstyle import losses
from tfstyle.cyclegan import MIXED_PRECISION, CycleGANConfig
from tfstyle.models import BLOCKS
from train.run_flags import config_from_flags, define_run_flags

D = CycleGANConfig.__dataclass_fields__
FLAGS = flags.FLAGS

flags.DEFINE_string("dataroot", None, "Folder with trainA/ and trainB/ (optional testA/, testB/); "
                    "'synthetic' trains on the built-in demo data.")
flags.DEFINE_string("model_dir", None, "Folder for checkpoints, logs, samples and the final "
                    "generators; re-running resumes from it.")
flags.DEFINE_enum("block", D["block"].default, BLOCKS,
                  "Residual block: resnet (CycleGAN), se (CycleSE), da (CycleDA).")
flags.DEFINE_integer("ngf", D["ngf"].default, "Generator filters in the first layer.")
flags.DEFINE_integer("ndf", D["ndf"].default, "Discriminator filters in the first layer.")
flags.DEFINE_integer("n_blocks", D["n_blocks"].default, "Residual blocks (9 at 256 px, 6 at 128).")
flags.DEFINE_integer("n_layers_d", D["n_layers_d"].default, "PatchGAN layers (3: 70x70 patches).")
flags.DEFINE_boolean("norm_affine", D["norm_affine"].default, "Instance norm with scale/offset.")
flags.DEFINE_integer("pam_kv_pool", D["pam_kv_pool"].default,
                     "CycleDA: pool keys/values of the position attention by this factor.")
flags.DEFINE_integer("load_size", D["load_size"].default, "Resize images to this square size.")
flags.DEFINE_integer("crop_size", D["crop_size"].default, "Random crop size (divisible by 4).")
flags.DEFINE_integer("batch_size", D["batch_size"].default, "Images per replica per step.")
flags.DEFINE_integer("epochs", D["epochs"].default, "Epochs at the initial learning rate.")
flags.DEFINE_integer("decay_epochs", D["decay_epochs"].default,
                     "Epochs of linear learning-rate decay to 0 after --epochs.")
flags.DEFINE_float("lr", D["lr"].default, "Adam learning rate.")
flags.DEFINE_float("beta1", D["beta1"].default, "Adam beta_1.")
flags.DEFINE_enum("gan_mode", D["gan_mode"].default, losses.GAN_MODES, "GAN objective.")
flags.DEFINE_float("lambda_cycle", D["lambda_cycle"].default, "Weight of the cycle losses.")
flags.DEFINE_float("lambda_identity", D["lambda_identity"].default,
                   "Identity loss weight, relative to --lambda_cycle (0 disables it).")
flags.DEFINE_float("paired_l1", D["paired_l1"].default,
                   "Cyclepix: weight of an L1 loss to the paired target (files with the same "
                   "name in trainA/ and trainB/); 0 disables it.")
flags.DEFINE_integer("pool_size", D["pool_size"].default, "Image pool size (0 disables it).")
flags.DEFINE_enum("mixed_precision", D["mixed_precision"].default, list(MIXED_PRECISION),
                  "Mixed precision policy (float16 uses loss scaling).")
flags.DEFINE_integer("num_samples", D["num_samples"].default,
                     "Test images translated per direction at the end of each epoch.")
flags.DEFINE_integer("max_steps", D["max_steps"].default,
                     "Stop after this many steps in total (0: train all epochs).")

define_run_flags(CycleGANConfig)
flags.mark_flags_as_required(["dataroot", "model_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config, flags_text = config_from_flags(CycleGANConfig)
    from tfstyle.cyclegan import train
    summary = train(config, flags_text=flags_text)
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
