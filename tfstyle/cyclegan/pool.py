"""The image pool of Shrivastava et al., as the official CycleGAN uses it.

The discriminators are updated with a history of generated images rather than only the
latest ones. Until the pool holds `size` images every fake is stored and returned; after
that each fake is, with probability 1/2, returned as is, or swapped with a random stored
image, which is returned instead.

The pool lives in variables (checkpointed with the models) and is queried on the global
batch in cross-replica context with stateless random numbers from (seed, step), so every
tf.distribute strategy sees the same pool as a one-device run.
"""

from __future__ import annotations

import tensorflow as tf


class ImagePool(tf.Module):
    """A pool of `size` images of shape `image_shape`; size 0 disables it."""

    def __init__(self, size: int, image_shape, name=None):
        super().__init__(name=name)
        self.size = int(size)
        self.images = tf.Variable(tf.zeros([max(self.size, 1), *image_shape]), trainable=False,
                                  name="images")
        self.count = tf.Variable(0, dtype=tf.int32, trainable=False, name="count")

    def query(self, images, seed):
        """Return a batch of the same shape as `images` [B, H, W, C] and update the pool.

        `seed` is an int32 tensor [2] for tf.random.stateless_*; the batch size must be static.
        """
        if self.size == 0:
            return images
        out = []
        for i in range(images.shape[0]):
            image = images[i]
            item_seed = seed + tf.constant([0, 7919], tf.int32) * i
            swap = tf.random.stateless_uniform([], item_seed) > 0.5
            slot = tf.random.stateless_uniform([], item_seed + 1, 0, self.size, tf.int32)
            full = self.count >= self.size
            index = tf.where(full, slot, tf.minimum(self.count, self.size - 1))
            stored = tf.gather(self.images, index)  # one image read, before the write
            write = tf.logical_or(tf.logical_not(full), swap)
            # In place (one image written, not the whole pool copied), on every replica's
            # copy under a tf.distribute strategy.
            self.images.scatter_update(
                tf.IndexedSlices(tf.where(write, image, stored)[None], index[None]))
            self.count.assign_add(tf.cast(tf.logical_not(full), tf.int32))
            out.append(tf.where(tf.logical_and(full, swap), stored, image))
        return tf.stack(out)
