"""Image-translation metrics: FID, KID, PSNR, SSIM, L1.

FID and KID compare two *sets* of images through features (2048-d InceptionV3 pool features
by convention, see `tfstyle.inception`); the feature extractor is not part of this module, so
the maths here works on any [N, D] feature arrays and is tested on small ones.

FID (Heusel et al. 2017)
    Fit a Gaussian (mean mu, covariance S, ddof 1) to each feature set and take the Fréchet
    distance  |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).
    The trace of the matrix square root is computed without scipy: S1 S2 is similar to the
    symmetric positive semi-definite M = S1^(1/2) S2 S1^(1/2) (S1^(1/2) from a symmetric
    eigendecomposition), so tr((S1 S2)^(1/2)) = sum sqrt(eigvalsh(M)), with eigenvalues at
    round-off level (below max * D * eps, negatives included) set to 0. Everything runs in
    float64. This gives the value of scipy.linalg.sqrtm(S1 @ S2).trace() (whose complex
    round-off the reference scripts discard) and stays real when the covariances are
    singular, which they always are with fewer images than feature dimensions. `fid` on
    feature arrays takes a cheaper exact route when the sets are smaller than the feature
    dimension (see its docstring).

KID (Binkowski et al. 2018)
    Unbiased estimate of the squared MMD with the cubic polynomial kernel
    k(x, y) = (x.y / d + 1)^3, averaged over `num_subsets` random subsets of
    m = min(subset_size, n1, n2) images drawn without replacement from each set (standard:
    100 subsets of 1,000). The spread of the subset estimates is reported as the standard error
    of a size-m estimate (the "+-" the reference implementations print). When m equals both
    set sizes every subset is the whole set and that spread is zero, which says nothing; the
    standard error is then the delete-one jackknife estimate of the full-set estimator's
    standard error instead (two-sample jackknife: leave out each x, then each y).

PSNR, SSIM, L1 are per-image and averaged over images; pixels are RGB uint8 (range 255).
PSNR of identical images is capped at `PSNR_CAP` dB so averages and JSON stay finite. SSIM is
tf.image.ssim (Gaussian window 11, sigma 1.5, k1 0.01, k2 0.03, mean over RGB channels); images
smaller than 11 pixels use a window as large as the image. L1 is the mean absolute difference
with pixel values scaled to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: PSNR of identical images (MSE 0) is reported as this many dB.
PSNR_CAP = 100.0


# ------------------------------------------------------------------------------------------
# FID
# ------------------------------------------------------------------------------------------


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], covariance [D, D]) of [N, D] features in float64 (covariance with ddof 1)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {f.shape}")
    if f.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {f.shape[0]}")
    return f.mean(axis=0), np.cov(f, rowvar=False, ddof=1).reshape(f.shape[1], f.shape[1])


def _clean_eigenvalues(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with round-off removed: values below
    max * size * machine epsilon (numerically zero: the matrix is singular there) become 0.
    Without this each of the many zero eigenvalues of a rank-deficient covariance would add
    sqrt(round-off) ~ 1e-8 relative to the trace of the square root."""
    tol = max(float(w.max(initial=0.0)), 0.0) * len(w) * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2.0)
    return (v * np.sqrt(_clean_eigenvalues(w))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 sigma2)^(1/2)) for symmetric PSD sigma1, sigma2 (see the module docstring)."""
    root1 = _psd_sqrt(np.asarray(sigma1, np.float64))
    m = root1 @ np.asarray(sigma2, np.float64) @ root1
    eig = np.linalg.eigvalsh((m + m.T) / 2.0)
    return float(np.sqrt(_clean_eigenvalues(eig)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); never below 0."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different dimensions: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) \
        - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(max(value, 0.0))


def fid(features1, features2) -> float:
    """FID between two [N, D] feature sets.

    With fewer images than dimensions (n1 * n2 <= D^2, the usual case for test sets) this uses
    the centred features directly: with X = (F1 - mu1) / sqrt(n1 - 1) and Y likewise,
    S1 = X^T X and S2 = Y^T Y, so tr(S1) = |X|_F^2 and the nonzero eigenvalues of S1 S2 are
    the squared singular values of the n1 x n2 matrix X Y^T: tr((S1 S2)^(1/2)) is its nuclear
    norm. Exact, and O(n1 n2 D) instead of several D x D eigendecompositions. Larger sets go
    through `frechet_distance` on the D x D covariances.
    """
    x, y = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"features must be [N, D] of the same D, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {len(x)} and {len(y)}")
    if len(x) * len(y) > x.shape[1] ** 2:
        return frechet_distance(*feature_statistics(x), *feature_statistics(y))
    mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
    xc, yc = (x - mu1) / np.sqrt(len(x) - 1), (y - mu2) / np.sqrt(len(y) - 1)
    trace_sqrt = np.linalg.svd(xc @ yc.T, compute_uv=False).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.sum(xc * xc) + np.sum(yc * yc) - 2.0 * trace_sqrt
    return float(max(value, 0.0))


# ------------------------------------------------------------------------------------------
# KID
# ------------------------------------------------------------------------------------------


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for rows of x [n, d] and y [m, d] -> [n, m]."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 estimate between samples x [n, d] and y [m, d] (n, m >= 2)."""
    n, m = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
                 + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2.0 * kxy.sum() / (n * m))


def mmd2_jackknife_se(x: np.ndarray, y: np.ndarray) -> float:
    """Delete-one jackknife standard error of `mmd2_unbiased(x, y)` (n, m >= 3)."""
    n, m = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    np.fill_diagonal(kxx, 0.0)
    np.fill_diagonal(kyy, 0.0)
    sxx, syy, sxy = kxx.sum(), kyy.sum(), kxy.sum()
    a, b = sxx / (n * (n - 1)), syy / (m * (m - 1))
    # Leaving out x_i removes row and column i of kxx (2 * its row sum) and row i of kxy.
    a_i = (sxx - 2.0 * kxx.sum(axis=1)) / ((n - 1) * (n - 2))
    c_i = (sxy - kxy.sum(axis=1)) / ((n - 1) * m)
    theta_x = a_i + b - 2.0 * c_i
    b_j = (syy - 2.0 * kyy.sum(axis=1)) / ((m - 1) * (m - 2))
    c_j = (sxy - kxy.sum(axis=0)) / (n * (m - 1))
    theta_y = a + b_j - 2.0 * c_j
    var = (n - 1) / n * np.sum((theta_x - theta_x.mean()) ** 2) \
        + (m - 1) / m * np.sum((theta_y - theta_y.mean()) ** 2)
    return float(np.sqrt(var))


@dataclass
class KID:
    value: float       # mean of the subset estimates
    se: float          # standard error (see the module docstring)
    se_method: str     # "subsets" or "jackknife"
    subset_size: int
    num_subsets: int


def kid(features1, features2, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> KID:
    """KID between two [N, D] feature sets (see the module docstring)."""
    x, y = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"features must be [N, D] of the same D, got {x.shape} and {y.shape}")
    if num_subsets < 1 or subset_size < 2:
        raise ValueError("KID needs num_subsets >= 1 and subset_size >= 2")
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    estimates = np.array([
        mmd2_unbiased(x[rng.choice(len(x), m, replace=False)],
                      y[rng.choice(len(y), m, replace=False)])
        for _ in range(num_subsets)])
    if m == len(x) == len(y):
        se = mmd2_jackknife_se(x, y) if m >= 3 else float("nan")
        method = "jackknife"
    else:
        se = float(estimates.std(ddof=1)) if num_subsets > 1 else float("nan")
        method = "subsets"
    return KID(float(estimates.mean()), se, method, m, num_subsets)


# ------------------------------------------------------------------------------------------
# Per-image metrics
# ------------------------------------------------------------------------------------------


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images of different shapes: {a.shape} vs {b.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def psnr(a, b, data_range: float = 255.0) -> float:
    """PSNR in dB of two same-shaped images (capped at PSNR_CAP)."""
    a, b = _pair(a, b)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return PSNR_CAP
    return float(min(PSNR_CAP, 10.0 * np.log10(data_range ** 2 / mse)))


def l1(a, b, data_range: float = 255.0) -> float:
    """Mean absolute difference, pixel values scaled to [0, 1]."""
    a, b = _pair(a, b)
    return float(np.mean(np.abs(a - b)) / data_range)


def ssim(a, b, data_range: float = 255.0) -> float:
    """SSIM of two same-shaped RGB images (tf.image.ssim, mean over channels)."""
    import tensorflow as tf

    a, b = _pair(a, b)
    size = int(min(11, a.shape[0], a.shape[1]))
    return float(tf.image.ssim(tf.constant(a, tf.float32), tf.constant(b, tf.float32),
                               max_val=data_range, filter_size=size))


def mean_ssim(images1: Sequence[np.ndarray], images2: Sequence[np.ndarray]) -> float:
    """Mean of `ssim` over aligned image lists, computed in batches of equal-shaped pairs
    (nan when empty)."""
    import tensorflow as tf

    if len(images1) != len(images2):
        raise ValueError(f"{len(images1)} images vs {len(images2)}")
    groups: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = {}
    for a, b in zip(images1, images2):
        a, b = _pair(a, b)
        groups.setdefault(a.shape, []).append((a, b))
    values = []
    for shape, pairs in groups.items():
        size = int(min(11, shape[0], shape[1]))
        for start in range(0, len(pairs), 64):
            chunk = pairs[start:start + 64]
            a = tf.constant(np.stack([p[0] for p in chunk]), tf.float32)
            b = tf.constant(np.stack([p[1] for p in chunk]), tf.float32)
            values.extend(tf.image.ssim(a, b, max_val=255.0, filter_size=size).numpy().tolist())
    return float(np.mean(values)) if values else float("nan")


def mean_of(fn, images1: Sequence[np.ndarray], images2: Sequence[np.ndarray]) -> float:
    """Mean of fn(a, b) over aligned image lists (nan when empty)."""
    if len(images1) != len(images2):
        raise ValueError(f"{len(images1)} images vs {len(images2)}")
    if not images1:
        return float("nan")
    return float(np.mean([fn(a, b) for a, b in zip(images1, images2)]))
