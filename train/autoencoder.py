"""Train the attention-aware VGG19 auto-encoder (CBAM seed; AAMS self-attention; none).

    python -m train.autoencoder --flagfile=configs/autoencoder_demo.flags
    python -m train.autoencoder --flagfile=configs/autoencoder_seed.flags \
        --content_dir=/data/coco/train2014 --model_dir=runs/cbam_relu4_1

Re-running the same command resumes from the last checkpoint in --model_dir. The trained
model lands in MODEL_DIR/autoencoder/; stylize with python -m tfstyle.stylize.
"""

import sys

from absl import app, flags, logging

from tfstyle.attention_models import ATTENTIONS, CUTS
from tfstyle.autoencoder import AutoencoderConfig
from train.run_flags import config_from_flags, define_run_flags

D = AutoencoderConfig.__dataclass_fields__
FLAGS = flags.FLAGS

flags.DEFINE_string("content_dir", None, "Folder of content images, searched recursively "
                    "(MS-COCO train2014 in the seed); 'synthetic' trains on built-in demo scenes.")
flags.DEFINE_string("model_dir", None, "Folder for checkpoints, logs, samples and the final "
                    "auto-encoder; re-running resumes from it.")
flags.DEFINE_enum("cut", D["cut"].default, CUTS, "Encoder depth: VGG19 up to this layer "
                  "(the seed's conv3_1 / conv4_1 / conv5_1 encoders).")
flags.DEFINE_enum("attention", D["attention"].default, ATTENTIONS,
                  "Attention module: cbam (the seed), self (AAMS self-attention), none.")
flags.DEFINE_string("vgg_weights", D["vgg_weights"].default,
                    "VGG19 weights: imagenet (Keras cache or download), auto (imagenet, else "
                    "random with a warning), random (warns: results not meaningful), or a "
                    "path to a .h5/.keras weights file.")
flags.DEFINE_float("width", D["width"].default, "Decoder channel multiplier (1.0: the exact "
                   "mirror of VGG19; smaller only for quick CPU demos).")
flags.DEFINE_integer("reduction", D["reduction"].default, "CBAM channel MLP reduction r.")
flags.DEFINE_integer("load_size", D["load_size"].default, "Resize the shorter side to this.")
flags.DEFINE_integer("crop_size", D["crop_size"].default,
                     "Random square crop (a multiple of 4/8/16 for relu3_1/4_1/5_1).")
flags.DEFINE_integer("batch_size", D["batch_size"].default, "Images per replica per step.")
flags.DEFINE_integer("steps", D["steps"].default, "Training iterations in total.")
flags.DEFINE_float("lr", D["lr"].default, "Adam learning rate.")
flags.DEFINE_float("beta1", D["beta1"].default, "Adam beta_1.")
flags.DEFINE_float("beta2", D["beta2"].default, "Adam beta_2.")
flags.DEFINE_float("adam_epsilon", D["adam_epsilon"].default, "Adam epsilon (AAMS: 1.0).")
flags.DEFINE_float("l_con", D["l_con"].default, "Weight of the content loss L_con.")
flags.DEFINE_float("l_p", D["l_p"].default, "Weight of the pixel MSE inside L_con.")
flags.DEFINE_float("l_att", D["l_att"].default, "Weight of the attention sparsity L_att.")
flags.DEFINE_float("l_tv", D["l_tv"].default, "Weight of the total variation L_tv.")
flags.DEFINE_string("sample_content", D["sample_content"].default,
                    "Content image of the final stylized example ('' or builtin: a training "
                    "image).")
flags.DEFINE_string("sample_style", D["sample_style"].default,
                    "Style image of the final example: a path, 'builtin' (a drawn stroke "
                    "pattern) or '' for no example.")
flags.DEFINE_integer("sample_size", D["sample_size"].default,
                     "Longer side of the final example's content and style.")

define_run_flags(AutoencoderConfig)
flags.mark_flags_as_required(["content_dir", "model_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config, flags_text = config_from_flags(AutoencoderConfig)
    from tfstyle.autoencoder import train
    from tfstyle.vgg import VGGWeightsUnavailableError
    try:
        summary = train(config, flags_text=flags_text)
    except (VGGWeightsUnavailableError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
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
