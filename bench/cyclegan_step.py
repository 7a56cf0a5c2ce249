"""Training throughput of the CycleGAN step (the one train.cyclegan runs).

    python bench/cyclegan_step.py --sizes=64,128,256 --precisions=none,bfloat16 --jit=false,true

For every size x precision x XLA setting: builds the model, warms up (tracing/compiling),
then times --steps full training steps (G and F update, pools, D update, loss fetch) on
batches from the real data pipeline, and prints seconds per step and images per second as a
markdown table with the median wall-clock and CPU seconds per step (CPU time of a
single-threaded run, --threads=1, does not depend on other load on the machine). Use --ngf/--ndf/--n_blocks for the architecture (the issue's CPU comparison
uses 32/32/6 at 64 px; the paper setting is 64/64/9 at 256 px).
"""

import os
import sys
import tempfile
import time

from absl import app, flags

import tfstyle  # noqa: F401  (before TensorFlow: sets the CPU kernel options)

flags.DEFINE_list("sizes", ["64"], "Crop sizes to measure.")
flags.DEFINE_list("precisions", ["none"], "Mixed precision settings: none, bfloat16, float16.")
flags.DEFINE_list("jit", ["false", "true"], "XLA settings to measure.")
flags.DEFINE_integer("ngf", 32, "Generator filters.")
flags.DEFINE_integer("ndf", 32, "Discriminator filters.")
flags.DEFINE_integer("n_blocks", 6, "Residual blocks.")
flags.DEFINE_string("block", "resnet", "resnet, se or da.")
flags.DEFINE_integer("batch_size", 1, "Images per step.")
flags.DEFINE_integer("steps", 20, "Timed steps per setting.")
flags.DEFINE_integer("warmup", 3, "Untimed steps per setting (tracing, XLA compilation).")
flags.DEFINE_integer("threads", 0, "TensorFlow intra- and inter-op threads (0: all cores).")
flags.DEFINE_string("dataroot", None, "Training data (default: the built-in synthetic set).")
FLAGS = flags.FLAGS


def measure(size, precision, jit, root, work):
    import tensorflow as tf

    from tfstyle.core.distribute import make_strategy
    from tfstyle.cyclegan.data import UnalignedData, load_domain
    from tfstyle.cyclegan.trainer import CycleGAN, CycleGANConfig

    config = CycleGANConfig(
        dataroot=str(root), model_dir=work, block=FLAGS.block, ngf=FLAGS.ngf, ndf=FLAGS.ndf,
        n_blocks=FLAGS.n_blocks, load_size=size + size // 8, crop_size=size,
        batch_size=FLAGS.batch_size, mixed_precision=precision, jit_compile=jit)
    strategy = make_strategy("auto")
    a = load_domain(os.path.join(root, "trainA"), config.load_size, os.path.join(work, "cache"))
    b = load_domain(os.path.join(root, "trainB"), config.load_size, os.path.join(work, "cache"))
    data = UnalignedData(a, b, size, seed=0)
    model = CycleGAN(config, strategy)
    batches = iter(strategy.distribute_datasets_from_function(
        lambda ctx: data.dataset(0, 0, model.global_batch, ctx).repeat()))

    def step():
        return {k: float(v) for k, v in model.train_step(next(batches)).items()}

    for _ in range(FLAGS.warmup):
        step()
    walls, cpus = [], []
    for _ in range(FLAGS.steps):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    median = sorted(walls)[len(walls) // 2]
    cpu_median = sorted(cpus)[len(cpus) // 2]
    device = ("GPU" if tf.config.list_physical_devices("GPU") else
              f"CPU, {FLAGS.threads or os.cpu_count()} threads")
    return median, cpu_median, model.global_batch / median, device


def main(argv):
    del argv
    import tensorflow as tf

    from tfstyle.core import synthetic
    if FLAGS.threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    work = tempfile.mkdtemp(prefix="tfstyle-bench-")
    root = FLAGS.dataroot or str(synthetic.make_dataset(os.path.join(work, "data"), size=300))
    print(f"| size | precision | XLA | device | s/step (median of {FLAGS.steps}) "
          "| CPU s/step | images/s |")
    print("|---:|---|---|---|---:|---:|---:|")
    for size in map(int, FLAGS.sizes):
        for precision in FLAGS.precisions:
            for jit in FLAGS.jit:
                seconds, cpu, rate, device = measure(size, precision, jit == "true", root, work)
                print(f"| {size} | {precision} | {jit} | {device} | {seconds:.3f} | {cpu:.3f} "
                      f"| {rate:.2f} |")
                sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
