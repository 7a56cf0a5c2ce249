"""Input-pipeline pieces every trainer shares: the data error, the slots of a global batch
that each tf.distribute replica reads, and the deterministic tf.data pipeline over them.

A trainer draws everything random about an epoch with numpy from (seed, epoch) and numbers
the epoch's examples ("slots"); `replica_slots` says which slots this input pipeline feeds,
and `slot_dataset` maps them to batches. So a run resumed at (epoch, step) sees exactly the
data the interrupted run would have seen, and replicas together see the one-device global
batch.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class DataError(ValueError):
    """A dataset that cannot be trained on; the message names the folder or file."""


def replica_slots(steps: int, global_batch: int, start_step: int = 0,
                  input_context: tf.distribute.InputContext | None = None) -> np.ndarray:
    """Epoch slot numbers [n, per_replica] that this input pipeline feeds, in order.

    Slot k of step s is s * global_batch + k; replica r of a step gets the r-th
    per-replica slice. A pipeline yields, step by step from `start_step`, the slices of its
    own replicas in replica order (as distribute_datasets_from_function hands batches out),
    so all replicas together see exactly the one-device global batch.
    """
    replicas = input_context.num_replicas_in_sync if input_context else 1
    if global_batch % replicas:
        raise DataError(f"global batch {global_batch} is not divisible by the {replicas} "
                        "replicas")
    per_replica = global_batch // replicas
    local = replicas // (input_context.num_input_pipelines if input_context else 1)
    first = (input_context.input_pipeline_id if input_context else 0) * local
    slots = np.arange(steps * global_batch).reshape(steps, replicas, per_replica)
    return slots[start_step:, first:first + local].reshape(-1, per_replica)


def slot_dataset(slots: np.ndarray, to_batch) -> tf.data.Dataset:
    """The tf.data pipeline of a trainer: one element per row of `slots` ([steps, b]),
    `to_batch(row)` (a tf function of the int64 slot row) mapping it to the batch, in order
    (deterministic), prefetched, with auto-sharding off (the slots already are the shard)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return (tf.data.Dataset.from_tensor_slices(slots)
            .map(to_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(options))
