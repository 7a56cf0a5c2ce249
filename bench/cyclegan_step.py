"""Training throughput of the CycleGAN step (the one train.cyclegan runs), alone or against
the official PyTorch reference in interleaved rounds.

    # ours: every size x precision x XLA setting, in this process
    python bench/cyclegan_step.py --sizes=64,128,256 --precisions=none,bfloat16 --jit=false,true
    # ours against the reference, 1 and 2 threads (the table of docs/benchmarks.md)
    python bench/cyclegan_step.py --reference_dir=PATH/pytorch-CycleGAN-and-pix2pix \
        --threads=1,2 --sizes=64,128,256 --jit=auto --rounds=5 --steps=4

A measurement builds the model, warms up (tracing, XLA compilation), then times full training
steps (G and F update, pools, D update, loss fetch) on batches from the real data pipeline,
and reports the median wall-clock and CPU seconds per step (CPU time of a single-threaded run
does not depend on other load on the machine to first order).

With --reference_dir each (threads, size) runs ours (one worker process per --precisions x
--jit setting) and the reference (float32) (bench/pytorch_reference_step.py, with --reference_python) as worker
processes that are built once and then run --steps steps in turn, --rounds times, so that
load from other processes falls on all of them alike; the table gives medians over all
rounds and the load average (`uptime`) before and after. --threads=N gives both libraries N cores
(0: all): PyTorch N threads, ours the thread pools train.cyclegan sets on N cores
(tfstyle.core.distribute.default_cpu_threads: on two cores one thread per op and two ops side
by side), or --intra_op_threads / --inter_op_threads. --jit=auto is the trainer's default (tfstyle.core.distribute.default_jit_compile). Use --ngf/--ndf/--n_blocks for the architecture (the issue's CPU
comparison uses 32/32/6; the paper setting is 64/64/9 at 256 px). --logical_devices=2
--strategy=mirrored splits the first GPU (or the CPU) in two and runs a two-replica
MirroredStrategy step.

Beside the table, a comparison prints how much arithmetic one step is (multiply-accumulates of
the convolutions and matrix products, counted from the networks' graphs and the passes a step
makes, the same for both libraries) and the float32 matrix-product rate TensorFlow reaches on
this machine with the same threads: the share of it each library reaches says how much faster
any implementation of the same step could be here.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

import tfstyle  # noqa: F401  (before TensorFlow: sets the CPU kernel options)
import step_timing  # bench/, beside this script
from step_timing import median, timed
from step_work import matmul_gflops_on, step_gflop

flags.DEFINE_list("sizes", ["64"], "Crop sizes to measure.")
flags.DEFINE_list("precisions", ["none"], "Mixed precision settings: none, bfloat16, float16.")
flags.DEFINE_list("jit", ["false", "true"], "XLA settings to measure: false, true, auto (the "
                  "trainer's default rule).")
flags.DEFINE_integer("ngf", 32, "Generator filters.")
flags.DEFINE_integer("ndf", 32, "Discriminator filters.")
flags.DEFINE_integer("n_blocks", 6, "Residual blocks.")
flags.DEFINE_string("block", "resnet", "A registered block type (tfstyle.cyclegan.blocks).")
flags.DEFINE_integer("batch_size", 1, "Images per replica per step.")
flags.DEFINE_integer("steps", 20, "Timed steps per setting (per round with --reference_dir).")
flags.DEFINE_integer("warmup", 3, "Untimed steps per setting (tracing, XLA compilation).")
flags.DEFINE_list("threads", ["0"], "Cores given to each library (0: all of them).")
flags.DEFINE_integer("intra_op_threads", -1, "Ours: threads per op, as the trainers' flag: "
                     "-1 the rule for --threads cores (tfstyle.core.distribute."
                     "default_cpu_threads), 0 TensorFlow's default (one per core).")
flags.DEFINE_integer("inter_op_threads", -1, "Ours: ops run side by side, as the trainers' "
                     "flag: -1 the rule, 0 TensorFlow's default (one per core).")
flags.DEFINE_string("dataroot", None, "Training data (default: the built-in synthetic set).")
flags.DEFINE_string("strategy", "auto", "auto, one_device or mirrored.")
flags.DEFINE_integer("logical_devices", 0, "Split the first GPU (else the CPU) into this many "
                     "logical devices (with --strategy=mirrored: one replica each).")
flags.DEFINE_string("reference_dir", None, "Checkout of the official PyTorch CycleGAN: compare "
                    "with it in interleaved rounds.")
flags.DEFINE_string("reference_python", sys.executable, "Python that runs the reference (it "
                    "needs torch).")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds with --reference_dir.")
flags.DEFINE_integer("worker_timeout", 1800, "Seconds a worker may take to build and warm up "
                     "or to run one round before the comparison gives up on it.")
flags.DEFINE_bool("serve", False, "Worker mode (used by --reference_dir; see "
                  "bench/pytorch_reference_step.py for the protocol).")
flags.DEFINE_string("profile", None, "Also trace the timed steps with the TensorFlow profiler "
                    "into this folder (TensorBoard's profile tab reads it) and print the time "
                    "per op type.")
flags.DEFINE_integer("profile_top", 25, "Op types listed with --profile.")
FLAGS = flags.FLAGS

HERE = os.path.dirname(os.path.abspath(__file__))


def jit_setting(text):
    return {"true": True, "false": False, "auto": None}[text]


def setup_devices(threads, jit=None):
    """Thread pools and logical devices; must run before TensorFlow starts its runtime."""
    import tensorflow as tf

    from tfstyle.core.distribute import (
        default_cpu_threads,
        default_jit_compile,
        split_cpu,
        split_gpu,
    )
    # As RunSettings.cpu_threads of train.cyclegan (whose parallel_ops is 2) on `threads`
    # cores: -1 the rule, 0 TensorFlow's default there (one thread per core in each pool).
    default = threads
    rule = default_cpu_threads(2, cores=threads or None,
                               jit_compile=default_jit_compile() if jit is None else jit)
    intra, inter = rule or (default, default)
    intra = intra if FLAGS.intra_op_threads == -1 else FLAGS.intra_op_threads or default
    inter = inter if FLAGS.inter_op_threads == -1 else FLAGS.inter_op_threads or default
    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    gpus = tf.config.list_physical_devices("GPU")
    if FLAGS.logical_devices:
        (split_gpu if gpus else split_cpu)(FLAGS.logical_devices)
    else:
        for gpu in gpus:  # share the GPU with the reference's worker
            tf.config.experimental.set_memory_growth(gpu, True)


def build_step(size, precision, jit, root, work):
    """Our model at `size` and a function running one training step (losses fetched)."""
    from tfstyle.core.distribute import make_strategy
    from tfstyle.core.training import FiniteGuard
    from tfstyle.cyclegan.data import UnalignedData, load_domain
    from tfstyle.cyclegan.trainer import CycleGAN, CycleGANConfig

    config = CycleGANConfig(
        dataroot=str(root), model_dir=work, block=FLAGS.block, ngf=FLAGS.ngf, ndf=FLAGS.ndf,
        n_blocks=FLAGS.n_blocks, load_size=size + size // 8, crop_size=size,
        batch_size=FLAGS.batch_size, mixed_precision=precision, jit_compile=jit)
    strategy = make_strategy(FLAGS.strategy)
    cache = os.path.join(work, "cache")
    a = load_domain(os.path.join(root, "trainA"), config.load_size, cache)
    b = load_domain(os.path.join(root, "trainB"), config.load_size, cache)
    data = UnalignedData(a, b, size, seed=0)
    model = CycleGAN(config, strategy)
    batches = iter(strategy.distribute_datasets_from_function(
        lambda ctx: data.dataset(0, 0, model.global_batch, ctx).repeat()))
    guard = FiniteGuard(model.state_variables)

    def step():
        """What train.cyclegan does per step: the step, the losses, the finiteness check."""
        losses = {k: float(v) for k, v in model.train_step(next(batches)).items()}
        if guard.bad_variables():
            raise RuntimeError("non-finite weights")
        return losses

    step.guard = guard
    return step, model, config



def device_text(model, threads):
    import tensorflow as tf
    replicas = model.strategy.num_replicas_in_sync
    where = ("GPU" if tf.config.list_physical_devices("GPU") else
             f"CPU, {threads or os.cpu_count()} threads ("
             f"{tf.config.threading.get_intra_op_parallelism_threads() or 'all'} per op, "
             f"{tf.config.threading.get_inter_op_parallelism_threads() or 'all'} side by side)")
    return where + (f", {replicas} replicas" if replicas > 1 else "")


def data_root(work):
    from tfstyle.core import synthetic
    return FLAGS.dataroot or str(synthetic.make_dataset(os.path.join(work, "data"), size=300))


def serve():
    """Worker: build one setting, warm up, then run STEPS commands (see the module doc)."""
    threads = int(FLAGS.threads[0])
    setup_devices(threads, jit_setting(FLAGS.jit[0]))
    work = tempfile.mkdtemp(prefix="tfstyle-bench-")
    step, model, config = build_step(int(FLAGS.sizes[0]), FLAGS.precisions[0],
                                     jit_setting(FLAGS.jit[0]), data_root(work), work)
    for _ in range(FLAGS.warmup):
        step()
    info = (f"tfstyle, XLA {'on' if config.jit_compile else 'off'}"
            f"{'' if FLAGS.jit[0] != 'auto' else ' (auto)'}, {FLAGS.precisions[0]}, "
            f"{device_text(model, threads)}")
    step_timing.serve(step, info, gflop=step_gflop(model))


class Worker:
    """A worker process speaking the serve protocol."""

    def __init__(self, command, env):
        self.command = command
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        self.ready = self._reply()
        self.info = self.ready["ready"]
        self.walls, self.cpus = [], []

    def _reply(self):
        import select
        deadline = time.monotonic() + FLAGS.worker_timeout
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, left))
            if not ready:
                self.close()
                sys.exit(f"a worker took over --worker_timeout={FLAGS.worker_timeout} s: "
                         f"{' '.join(self.command)}")
            line = self.process.stdout.readline()
            if not line:
                sys.exit(f"a worker ended (exit code {self.process.wait()}): "
                         f"{' '.join(self.command)}")
            if line.startswith("{"):
                return json.loads(line)

    def run(self, steps):
        self.process.stdin.write(f"STEPS {steps}\n")
        self.process.stdin.flush()
        reply = self._reply()
        self.walls += reply["wall"]
        self.cpus += reply["cpu"]

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write("QUIT\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()


def load_average():
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def compare():
    """Ours (each --jit setting) and the reference, interleaved, for each threads x size."""
    reference = os.path.join(HERE, "pytorch_reference_step.py")
    if not os.path.isfile(os.path.join(FLAGS.reference_dir, "models", "cycle_gan_model.py")):
        sys.exit(f"--reference_dir={FLAGS.reference_dir}: not a pytorch-CycleGAN-and-pix2pix "
                 "checkout (no models/cycle_gan_model.py)")
    arch = [f"--ngf={FLAGS.ngf}", f"--ndf={FLAGS.ndf}", f"--n_blocks={FLAGS.n_blocks}"]
    print(f"ngf {FLAGS.ngf}, ndf {FLAGS.ndf}, {FLAGS.n_blocks} blocks, batch 1; "
          f"{FLAGS.rounds} rounds of {FLAGS.steps} steps after {FLAGS.warmup} warm-up steps; "
          f"median s/step over all rounds; load average (1, 5, 15 min) before -> after\n")
    print("| threads | size | run | wall s/step | CPU s/step | ratio to the reference "
          "(wall, CPU) | load before -> after |")
    print("|---:|---:|---|---:|---:|---|---|")
    import tensorflow as tf
    gpu = bool(tf.config.list_physical_devices("GPU"))
    notes = []
    for threads in map(int, FLAGS.threads):
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        for size in map(int, FLAGS.sizes):
            before = load_average()
            common = [f"--warmup={FLAGS.warmup}", f"--threads={threads}"] + arch
            ours = [[sys.executable, os.path.abspath(__file__), "--serve", f"--sizes={size}",
                     f"--intra_op_threads={FLAGS.intra_op_threads}",
                     f"--inter_op_threads={FLAGS.inter_op_threads}",
                     f"--jit={jit}", f"--precisions={precision}", f"--block={FLAGS.block}"]
                    + common + ([f"--dataroot={FLAGS.dataroot}"] if FLAGS.dataroot else [])
                    for precision in FLAGS.precisions for jit in FLAGS.jit]
            theirs = [FLAGS.reference_python, reference, "--serve",
                      f"--reference_dir={FLAGS.reference_dir}", f"--size={size}",
                      "--device=cuda" if gpu else "--device=cpu"] + common
            workers = []
            try:
                for command in ours + [theirs]:
                    workers.append(Worker(command, env))
                for _ in range(FLAGS.rounds):
                    for worker in workers:
                        worker.run(FLAGS.steps)
            finally:
                for worker in workers:
                    worker.close()
            after = load_average()
            ref = workers[-1]
            for worker in workers:
                wall, cpu = median(worker.walls), median(worker.cpus)
                ratio = ("" if worker is ref else
                         f"{wall / median(ref.walls):.2f}, {cpu / median(ref.cpus):.2f}")
                print(f"| {threads or os.cpu_count()} | {size} | {worker.info} | {wall:.3f} "
                      f"| {cpu:.3f} | {ratio} | {before} -> {after} |", flush=True)
            gflop, rate = workers[0].ready["gflop"], matmul_gflops_on(threads)
            notes.append(f"{threads or os.cpu_count()} threads, {size} px: one step is "
                         f"{gflop:.1f} GFLOP; TensorFlow's float32 matrix product runs at "
                         f"{rate:.0f} GFLOP/s here; of that rate, " + ", ".join(
                             f"{', '.join(w.info.split(', ')[:1 if w is ref else 2])} reaches "
                             f"{100 * gflop / median(w.walls) / rate:.0f}%" for w in workers))
    print("\n".join(["", *notes]))


def table():
    """Ours, every size x precision x XLA setting, in this process."""
    threads = int(FLAGS.threads[0])
    # One process, one set of pools: the rule's for XLA off unless every setting is XLA on.
    setup_devices(threads, jit_setting(FLAGS.jit[0]) if len(set(FLAGS.jit)) == 1 else False)
    import tensorflow as tf
    work = tempfile.mkdtemp(prefix="tfstyle-bench-")
    root = data_root(work)
    notes = []
    print(f"load average before: {load_average()}")
    print(f"| size | precision | XLA | device | s/step (median of {FLAGS.steps}) "
          "| CPU s/step | images/s |")
    print("|---:|---|---|---|---:|---:|---:|")
    for size in map(int, FLAGS.sizes):
        for precision in FLAGS.precisions:
            for jit in FLAGS.jit:
                step, model, config = build_step(size, precision, jit_setting(jit), root, work)
                for _ in range(FLAGS.warmup):
                    step()
                if FLAGS.profile:
                    tf.profiler.experimental.start(
                        os.path.join(FLAGS.profile, f"{size}_{precision}_{jit}"))
                walls, cpus = timed(step, FLAGS.steps)
                if FLAGS.profile:
                    tf.profiler.experimental.stop()
                xla = f"{config.jit_compile}".lower() + (" (auto)" if jit == "auto" else "")
                print(f"| {size} | {precision} | {xla} | {device_text(model, threads)} "
                      f"| {median(walls):.3f} | {median(cpus):.3f} "
                      f"| {model.global_batch / median(walls):.2f} |", flush=True)
                guard_cpu = timed(step.guard.bad_variables, 5)[1]
                notes.append(f"{size} px: the per-step finiteness check of "
                             f"{sum(int(tf.size(v)) for v in step.guard.variables) / 1e6:.1f}M "
                             f"floats takes {1000 * median(guard_cpu):.1f} CPU ms")
                if FLAGS.profile:
                    notes.append(op_table(os.path.join(FLAGS.profile,
                                                       f"{size}_{precision}_{jit}"),
                                          f"{size} px, {precision}, XLA {xla}"))
    print(f"load average after: {load_average()}")
    print("\n".join(["", *notes]))


def op_table(folder, title):
    """Milliseconds per step by op type (self time of the op events on the host threads, and
    the executor's own time between them; wrappers and waits left out) from the profiler
    trace in `folder`, as a markdown table."""
    import collections
    import glob

    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    space = xplane_pb2.XSpace()
    path = sorted(glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True))[-1]
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    ms, count = collections.Counter(), collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            open_events = []  # [end, self time, op type] of the enclosing events
            for event in sorted(line.events, key=lambda e: e.offset_ps):
                while open_events and open_events[-1][0] <= event.offset_ps:
                    _, own, kind = open_events.pop()
                    ms[kind] += own
                if open_events:
                    open_events[-1][1] -= event.duration_ps
                name = plane.event_metadata[event.metadata_id].name
                kind = (name.rsplit(":", 1)[1] if ":" in name and "::" not in name else
                        "(executor, per op)" if name == "ExecutorState::Process" else None)
                count[kind] += 1
                open_events.append([event.offset_ps + event.duration_ps, event.duration_ps,
                                    kind])
            for _, own, kind in open_events:
                ms[kind] += own
    ms.pop(None, None)
    total = sum(ms.values())
    rows = [f"| {kind} | {ps / 1e9 / FLAGS.steps:.1f} | {count[kind] / FLAGS.steps:.0f} "
            f"| {100 * ps / total:.0f}% |" for kind, ps in ms.most_common(FLAGS.profile_top)]
    return "\n".join([f"Time by op type, {title} (ms per step, wall clock of the op events; "
                      f"{FLAGS.steps} steps):", "", "| op | ms/step | ops/step | share |",
                      "|---|---:|---:|---:|", *rows, ""])


def main(argv):
    del argv
    if FLAGS.serve:
        serve()
    elif FLAGS.reference_dir:
        compare()
    else:
        table()
    # The endless input iterators' threads (of a MirroredStrategy's above all) can keep the
    # interpreter from exiting; everything is printed and nothing is left to write.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    app.run(main)
