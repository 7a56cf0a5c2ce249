"""Training step time of the attention auto-encoder (the one train.autoencoder runs).

    python bench/autoencoder_step.py --cuts=relu3_1,relu4_1,relu5_1 --threads=1 --steps=2

For every cut: builds the trainer with the seed's settings (CBAM, full-width decoder, batch
8, 256 px crops, perceptual loss relu1_1..relu4_1, attention norm "sum") on random VGG19
weights (the time does not depend on them), warms up (tracing), then times --steps steps on
a fixed random batch and prints the median wall-clock and CPU seconds per step as a markdown
table (CPU time of a single-threaded run, --threads=1, does not depend on other load).
"""

import tempfile
import time

import numpy as np
from absl import app, flags

import tfstyle  # noqa: F401  (before TensorFlow: sets the CPU kernel options)

flags.DEFINE_list("cuts", ["relu3_1", "relu4_1", "relu5_1"], "Encoder cuts to measure.")
flags.DEFINE_string("attention", "cbam", "cbam, self or none.")
flags.DEFINE_integer("batch_size", 8, "Images per step.")
flags.DEFINE_integer("crop_size", 256, "Crop side.")
flags.DEFINE_integer("steps", 2, "Timed steps per cut.")
flags.DEFINE_integer("warmup", 1, "Untimed steps per cut (tracing).")
flags.DEFINE_integer("threads", 0, "TensorFlow intra- and inter-op threads (0: all cores).")
FLAGS = flags.FLAGS


def measure(cut, work):
    import tensorflow as tf

    from tfstyle.style.trainer import AutoencoderConfig, AutoencoderTrainer

    config = AutoencoderConfig(content_dir="synthetic", model_dir=work, cut=cut,
                               attention=FLAGS.attention, vgg_weights="random",
                               load_size=FLAGS.crop_size, crop_size=FLAGS.crop_size,
                               batch_size=FLAGS.batch_size, strategy="one_device")
    trainer = AutoencoderTrainer(config, tf.distribute.OneDeviceStrategy("/cpu:0"), "random")
    batch = tf.constant(np.random.default_rng(0).integers(
        0, 256, (FLAGS.batch_size, FLAGS.crop_size, FLAGS.crop_size, 3)), tf.uint8)

    def step():
        return {k: float(v) for k, v in trainer.train_step(batch).items()}

    for _ in range(FLAGS.warmup):
        step()
    walls, cpus = [], []
    for _ in range(FLAGS.steps):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return sorted(walls)[len(walls) // 2], sorted(cpus)[len(cpus) // 2]


def main(argv):
    del argv
    import tensorflow as tf
    if FLAGS.threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    print(f"batch {FLAGS.batch_size}, {FLAGS.crop_size} px, {FLAGS.attention}, "
          f"threads {FLAGS.threads or 'all'}\n")
    print("| cut | wall s/step | CPU s/step |\n|---|---:|---:|")
    for cut in FLAGS.cuts:
        with tempfile.TemporaryDirectory() as work:
            wall, cpu = measure(cut, work)
        print(f"| {cut} | {wall:.2f} | {cpu:.2f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
