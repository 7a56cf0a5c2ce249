"""Feature transforms of attention-aware multi-stroke style transfer (AAMS, Yao et al. 2019),
written as plain TensorFlow functions on the features of ONE image.

Shapes: a feature map is ``[H, W, C]`` (float32); ``N = H * W``.

Whitening and colouring (Li et al. 2017, "universal style transfer")
    X = f - mu (rows are the N positions), Sigma = X^T X / N (the biased covariance, as the
    AAMS code does), Sigma = E diag(d) E^T. Eigenvalues d_i <= eps (1e-5) are dropped.
    whiten:  f_hat = X E diag(d^-1/2) E^T          -> cov(f_hat) = I (on the kept subspace)
    colour:  f_cs  = f_hat E_s diag(d_s^1/2) E_s^T + mu_s
                                                 -> cov(f_cs) = Sigma_s, mean(f_cs) = mu_s
    The decompositions run in float64 (`tf.linalg.eigh`). `whiten(..., method=
    "newton_schulz")` instead iterates Newton-Schulz (coupled, on Sigma / ||Sigma||_F) to
    Sigma^-1/2 in float32 with matrix products only, for graphs that must convert to builtin
    LiteRT operators (no eigen-decomposition there); directions whose eigenvalues are below
    about ||Sigma||_F * 2.25^-iterations are not fully whitened instead of being dropped.
"""

from __future__ import annotations

import tensorflow as tf

#: Eigenvalues of a covariance at or below this are treated as zero (AAMS: 1e-5).
EIGEN_EPS = 1e-5


def _flatten(features) -> tf.Tensor:
    features = tf.convert_to_tensor(features, tf.float32)
    if features.shape.rank != 3:
        raise ValueError(f"expected one feature map [H, W, C], got shape {features.shape}")
    return tf.reshape(features, [-1, tf.shape(features)[-1]])


def _eigen(features):
    """(mean [C], eigenvalues d [C], eigenvectors E [C, C], centred X [N, C]) in float64."""
    x = tf.cast(_flatten(features), tf.float64)
    mean = tf.reduce_mean(x, axis=0)
    centred = x - mean
    n = tf.cast(tf.shape(x)[0], tf.float64)
    cov = tf.matmul(centred, centred, transpose_a=True) / n
    d, e = tf.linalg.eigh((cov + tf.transpose(cov)) / 2)
    return mean, d, e, centred


#: Newton-Schulz iterations of `whiten(..., method="newton_schulz")`.
NEWTON_SCHULZ_ITERATIONS = 20
WHITENING_METHODS = ("eigh", "newton_schulz")


def inverse_sqrt_newton_schulz(cov, iterations: int = NEWTON_SCHULZ_ITERATIONS) -> tf.Tensor:
    """Sigma^-1/2 of a symmetric positive semi-definite [C, C] (float32) by the coupled
    Newton-Schulz iteration: A = Sigma / ||Sigma||_F, Y_0 = A, Z_0 = I,
    T = (3 I - Z Y) / 2, Y <- Y T, Z <- T Z; Z -> A^-1/2, returned as Z / sqrt(||Sigma||_F)."""
    cov = tf.convert_to_tensor(cov, tf.float32)
    norm = tf.sqrt(tf.reduce_sum(tf.square(cov))) + 1e-12
    identity = tf.eye(cov.shape[-1], dtype=tf.float32)
    y, z = cov / norm, identity
    for _ in range(iterations):
        # T = 1.5 I - 0.5 Z Y, written as an addition: the LiteRT converter (TF 2.21) turns
        # "c * I - Z Y" with a constant identity into -(c * I - Z Y).
        t = tf.add(1.5 * identity, -0.5 * tf.matmul(z, y))
        y, z = tf.matmul(y, t), tf.matmul(t, z)
    return z / tf.sqrt(norm)


def whiten(features, eps: float = EIGEN_EPS, method: str = "eigh",
           iterations: int = NEWTON_SCHULZ_ITERATIONS) -> tf.Tensor:
    """ZCA whitening: [H, W, C] -> [H, W, C] with zero mean and identity covariance.

    "eigh": f_hat = (f - mu) E diag(d^-1/2) E^T, eigen-directions with d <= eps dropped.
    "newton_schulz": f_hat = (f - mu) Sigma^-1/2 by `inverse_sqrt_newton_schulz` (float32).
    """
    if method == "newton_schulz":
        x = _flatten(features)
        centred = x - tf.reduce_mean(x, axis=0)
        n = tf.cast(tf.shape(x)[0], tf.float32)
        cov = tf.matmul(centred, centred, transpose_a=True) / n
        out = tf.matmul(centred, inverse_sqrt_newton_schulz(cov, iterations))
        return tf.reshape(out, tf.shape(features))
    if method != "eigh":
        raise ValueError(f"whitening method must be one of {WHITENING_METHODS}, got {method!r}")
    _, d, e, centred = _eigen(features)
    keep = tf.cast(d > eps, tf.float64)
    inv_sqrt = keep / tf.sqrt(tf.maximum(d, eps))
    transform = tf.matmul(e * inv_sqrt, e, transpose_b=True)  # E diag(d^-1/2) E^T
    out = tf.matmul(centred, transform)
    return tf.reshape(tf.cast(out, tf.float32), tf.shape(features))


def colouring(style, eps: float = EIGEN_EPS) -> tuple[tf.Tensor, tf.Tensor]:
    """The colouring transform of a style map [Hs, Ws, C]: (E_s diag(d_s^1/2) E_s^T [C, C],
    mu_s [C]), float32."""
    mean, d, e, _ = _eigen(style)
    sqrt_d = tf.cast(d > eps, tf.float64) * tf.sqrt(tf.maximum(d, 0.0))
    transform = tf.matmul(e * sqrt_d, e, transpose_b=True)
    return tf.cast(transform, tf.float32), tf.cast(mean, tf.float32)


def apply_colouring(whitened, transform, mean) -> tf.Tensor:
    """f_cs = f_hat T + mu for features [H, W, C], a colouring transform T [C, C] and mean mu
    [C] (`colouring`)."""
    whitened = tf.convert_to_tensor(whitened, tf.float32)
    out = tf.matmul(_flatten(whitened), transform) + mean
    return tf.reshape(out, tf.shape(whitened))


def colour(whitened, style, eps: float = EIGEN_EPS) -> tf.Tensor:
    """Colour whitened features [H, W, C] with the covariance and mean of `style` [Hs, Ws, C]:
    f_cs = f_hat E_s diag(d_s^1/2) E_s^T + mu_s."""
    return apply_colouring(whitened, *colouring(style, eps))


def wct(content, style, alpha: float = 1.0, eps: float = EIGEN_EPS) -> tf.Tensor:
    """Whitening and colouring transform with Li et al.'s blend:
    alpha * colour(whiten(f_c), f_s) + (1 - alpha) * f_c."""
    content = tf.convert_to_tensor(content, tf.float32)
    return alpha * colour(whiten(content, eps), style, eps) + (1.0 - alpha) * content
