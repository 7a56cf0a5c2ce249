"""Choosing a tf.distribute strategy: one device, all local GPUs, or many machines."""

from __future__ import annotations

import json
import os

import tensorflow as tf
from absl import logging

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def split_cpu(n: int) -> None:
    """Expose the CPU as `n` logical devices (to run MirroredStrategy without GPUs).
    Must run before TensorFlow initialises its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


def split_gpu(n: int, memory_mb: int = 16384) -> None:
    """Expose the first GPU as `n` logical devices of `memory_mb` MiB each (to run a
    MirroredStrategy of n replicas on one GPU). Must run before TensorFlow initialises its
    devices."""
    gpu = tf.config.list_physical_devices("GPU")[0]
    tf.config.set_logical_device_configuration(
        gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=memory_mb) for _ in range(n)])


def _cluster_workers():
    config = os.environ.get("TF_CONFIG")
    if not config:
        return 0
    try:
        return len(json.loads(config).get("cluster", {}).get("worker", []))
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from err


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """auto: MultiWorkerMirrored when TF_CONFIG names a cluster, Mirrored over all GPUs when
    there are several, else the one GPU or the CPU. mirrored without GPUs mirrors over the
    logical CPU devices (see split_cpu)."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    # Only physical devices here: MultiWorkerMirroredStrategy must be created before the
    # TensorFlow runtime starts, which listing logical devices would do.
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = ("multi_worker" if _cluster_workers() else
                "mirrored" if len(gpus) > 1 else "one_device")
    if name == "multi_worker":
        if not _cluster_workers():
            raise ValueError("strategy multi_worker needs TF_CONFIG with a cluster of workers "
                             '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                             '"task": {"type": "worker", "index": 0}})')
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU" if gpus else "CPU")]
        cross = None if gpus else tf.distribute.ReductionToOneDevice()
        strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=cross)
    else:
        strategy = tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    logging.info("strategy %s with %d replicas", type(strategy).__name__,
                 strategy.num_replicas_in_sync)
    return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints, logs and outputs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


# The core counts on which default_cpu_threads' sharing was measured to pay.
MEASURED_CORES = (2,)


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_cpu_threads(parallel_ops: int, cores: int | None = None,
                        jit_compile: bool = False) -> tuple[int, int] | None:
    """(intra-op, inter-op) threads for a training step of which `parallel_ops` ops can
    usefully run side by side, or None for TensorFlow's defaults (one intra-op and one
    inter-op thread per core).

    On a CPU with several cores the cores are shared out: each op gets cores / parallel_ops
    threads and that many ops run side by side. The GAN steps have two such streams of ops
    (CycleGAN's G and F, then D_A and D_B; in every step a layer's weight and input
    gradients); with TensorFlow's defaults each of their ops asks for all cores while another
    runs, and they contend. On two cores, one thread per op and two ops at a time made the
    CycleGAN step 1.04-1.27x faster, CUT's 1.05-1.17x and distillation's 1.07-1.33x
    (docs/benchmarks.md, "Thread pools"). On a GPU, for a step of one stream (the
    auto-encoder's, which was slower split), or under XLA (whose CPU code parallelises inside
    its fused kernels, in the intra-op pool) the defaults stay; so they do on other core
    counts than the two it was measured on, until measured there (tf.data's parallel calls
    also run in the inter-op pool). `cores`: how many there are (default: all this process
    may use)."""
    cores = cores or cpu_cores()
    if (parallel_ops < 2 or cores not in MEASURED_CORES or jit_compile
            or tf.config.list_physical_devices("GPU")):
        return None
    streams = min(parallel_ops, cores)
    return cores // streams, streams


def set_cpu_threads(intra_op: int, inter_op: int) -> bool:
    """Set TensorFlow's thread pools (0 leaves one as TensorFlow sets it); False, with a
    warning, when TensorFlow has already started its runtime and they can no longer change.
    Must run before the first op, as the trainers' start_run does."""
    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        logging.warning("TensorFlow's thread pools were fixed before this run started "
                        "(--intra_op_threads=%d --inter_op_threads=%d not applied)",
                        intra_op, inter_op)
        return False
    logging.info("CPU thread pools: %s threads per op, %s ops side by side",
                 intra_op or "default", inter_op or "default")
    return True


def default_jit_compile() -> bool:
    """Whether XLA makes a training step faster where this runs (docs/benchmarks.md): on a
    GPU it fuses the elementwise work between the convolutions; on a CPU TensorFlow's oneDNN
    kernels were faster at training sizes (128 px and up on one core, every size on two), and
    start without compiling."""
    return bool(tf.config.list_physical_devices("GPU"))
