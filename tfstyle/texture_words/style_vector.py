"""Gram matrices, Neural Style Vectors (Matsuo & Yanai, ICMR 2016) and VGG19 fc6 features.

Notation: a layer l gives activations F^l of shape [H_l, W_l, N_l] (N_l channels, M_l = H_l W_l
positions), seen as an N_l x M_l matrix.

Gram matrix (normalised by the number of positions, as in the TF Gatys implementations):

    G^l = F^l (F^l)^T / M_l                      [N_l, N_l]

Neural Style Vector (the seed, slide "Neural Style Vector"): the upper triangle of G^l with the
diagonal, listed row by row of the lower triangle as in the seed
(V^l = [G_11, G_21, G_22, ..., G_N1, ..., G_NN], N_l (N_l + 1) / 2 values; 131,328 at conv5_1),
then the signed square root and L2 normalisation:

    V^l <- sign(V^l) * sqrt(|V^l|)
    V^l <- V^l / ||V^l||_2

Per-layer vectors are concatenated, each normalised on its own (so the concatenation of L layers
has norm sqrt(L)).  Because the signed square root is homogeneous of degree 1/2, the 1/M_l
factor of the Gram matrix does not change the normalised vector.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfstyle.core import vgg

#: The seed's Neural Style Vector layers (conv1_2, conv2_2, conv3_4, conv4_4, conv5_4).
NSV_LAYERS: tuple[str, ...] = (
    "block1_conv2",
    "block2_conv2",
    "block3_conv4",
    "block4_conv4",
    "block5_conv4",
)

_EPS = 1e-12


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
    """G = F F^T / (H W) per image.

    Args:
      features: ``[B, H, W, N]`` activations.

    Returns:
      ``[B, N, N]`` Gram matrices, ``G[b, i, j] = sum_{h,w} F[b,h,w,i] F[b,h,w,j] / (H W)``.
    """
    features = tf.convert_to_tensor(features)
    shape = tf.shape(features)
    positions = tf.cast(shape[1] * shape[2], features.dtype)
    return tf.einsum("bhwi,bhwj->bij", features, features) / positions


def signed_sqrt(v: tf.Tensor) -> tf.Tensor:
    """sign(v) * sqrt(|v|), elementwise (keeps the sign, compresses the magnitude)."""
    v = tf.convert_to_tensor(v)
    return tf.sign(v) * tf.sqrt(tf.abs(v))


def gram_triangle(gram: tf.Tensor) -> tf.Tensor:
    """The N (N + 1) / 2 distinct entries of symmetric ``[B, N, N]`` Gram matrices.

    Ordered as in the seed: G_11, G_21, G_22, G_31, G_32, G_33, ... (rows of the lower
    triangle, which equal the columns of the upper triangle).  Returns ``[B, N (N + 1) / 2]``.
    """
    gram = tf.convert_to_tensor(gram)
    n = gram.shape[-1]
    if n is None:
        raise ValueError("gram_triangle needs a static channel count.")
    rows, cols = np.tril_indices(n)
    flat_index = tf.constant(rows * n + cols, dtype=tf.int32)
    flat = tf.reshape(gram, [-1, n * n])
    return tf.gather(flat, flat_index, axis=1)


def l2_normalize(v: tf.Tensor) -> tf.Tensor:
    """v / ||v||_2 along the last axis (zero vectors stay zero)."""
    v = tf.convert_to_tensor(v)
    norm = tf.sqrt(tf.reduce_sum(tf.square(v), axis=-1, keepdims=True))
    return v / tf.maximum(norm, _EPS)


def layer_style_vector(features: tf.Tensor) -> tf.Tensor:
    """Neural Style Vector of one layer: ``[B, H, W, N]`` -> ``[B, N (N + 1) / 2]``, unit norm."""
    return l2_normalize(signed_sqrt(gram_triangle(gram_matrix(features))))


def neural_style_vector(
    features: Mapping[str, tf.Tensor],
    layers: Sequence[str] | None = None,
    concat: bool = True,
):
    """Neural Style Vector of a batch from named activations.

    Args:
      features: ``{layer name: [B, H, W, N_l]}``, e.g. the output of
        :func:`tfstyle.core.vgg.vgg19_feature_extractor`.
      layers: which entries of ``features`` to use and in which order; default: the seed's
        :data:`NSV_LAYERS` if all are present, else every entry in the dict's order.
      concat: return one concatenated ``[B, sum_l N_l (N_l + 1) / 2]`` tensor (default) or a
        dict ``{layer: [B, N_l (N_l + 1) / 2]}``.

    Each layer's part has unit L2 norm.
    """
    if layers is None:
        layers = NSV_LAYERS if all(n in features for n in NSV_LAYERS) else list(features)
    missing = [n for n in layers if n not in features]
    if missing:
        raise KeyError(f"neural_style_vector: no features for layer(s) {missing}.")
    parts = {name: layer_style_vector(features[name]) for name in layers}
    if not concat:
        return parts
    return tf.concat([parts[name] for name in layers], axis=-1)


def style_vector_length(layers: Iterable[str] = NSV_LAYERS) -> int:
    """Length of the concatenated NSV: sum over layers of N_l (N_l + 1) / 2."""
    return sum(vgg.layer_channels(n) * (vgg.layer_channels(n) + 1) // 2 for n in layers)


# --------------------------------------------------------------------------------------------
# fc6 (DCNN) features
# --------------------------------------------------------------------------------------------


def fc6_extractor(weights: vgg.WeightsSpec = "imagenet", base: keras.Model | None = None):
    """A model ``RGB [B, 224, 224, 3] in [0, 255] -> {"fc6": [B, 4096]}``.

    Needs the full VGG19 (``include_top=True``): with ``weights`` a path, that file must hold
    the fc layers (the ``..._kernels.h5`` file, not ``..._notop.h5``), else
    :class:`tfstyle.core.vgg.VGGWeightsMismatchError` says so.  ``fc6`` is the rectified
    output of the first fully connected layer (Keras ``fc1``), i.e. Caffe's ``fc6`` blob after
    its in-place ReLU.
    """
    if base is None:
        base = vgg.load_vgg19(weights=weights, include_top=True)
    return vgg.vgg19_feature_extractor(["fc6"], base=base, name="vgg19_fc6")


def fc6_features(images, extractor: keras.Model, batch_size: int = 8) -> np.ndarray:
    """fc6 features of RGB images.

    Args:
      images: a list of ``[H_i, W_i, 3]`` RGB arrays in [0, 255] (any sizes) or one
        ``[B, H, W, 3]`` array.  Each image is resized (bilinear, antialiased, aspect ratio not
        kept) to 224 x 224, the input size the fc layers were trained on.
      extractor: from :func:`fc6_extractor`.
      batch_size: images per forward pass.

    Returns:
      ``[B, 4096]`` float32.
    """
    size = vgg.TOP_INPUT_SIZE
    resized = [
        tf.image.resize(tf.cast(img, tf.float32), (size, size), antialias=True) for img in images
    ]
    out = []
    for start in range(0, len(resized), batch_size):
        batch = tf.clip_by_value(tf.stack(resized[start : start + batch_size]), 0.0, 255.0)
        out.append(extractor(batch, training=False)["fc6"].numpy())
    if not out:
        return np.zeros((0, 4096), np.float32)
    return np.concatenate(out, axis=0).astype(np.float32)
