"""The new last layer: softmax regression with L2 regularisation, in numpy, and its integer
form for the base model's FULLY_CONNECTED layer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edged.train.tflite import QuantizedHead

F32 = npt.NDArray[np.float32]
# strongest first: each fit warm-starts the next
L2_GRID = (1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3)
MAX_ITERATIONS = 300
TOLERANCE = 1e-5


@dataclass(frozen=True)
class FloatHead:
    """``logits = features @ weights.T + bias`` on dequantized features."""

    weights: F32  # [classes, features]
    bias: F32  # [classes]
    l2: float
    iterations: int = 0

    def logits(self, x: F32) -> F32:
        out: F32 = x @ self.weights.T + self.bias
        return out

    def predict(self, x: F32) -> npt.NDArray[np.int64]:
        return np.asarray(np.argmax(self.logits(x), axis=1), dtype=np.int64)


def _softmax(z: F32) -> F32:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: F32 = e / e.sum(axis=1, keepdims=True)
    return out


def cross_entropy(head: FloatHead, x: F32, y: npt.NDArray[np.int64]) -> float:
    p = _softmax(head.logits(x))
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12))))


@dataclass(frozen=True)
class Standardizer:
    """Centering and one global scale: well-conditioned gradients, and weights that fold
    back into a layer over the raw features without blowing up any single feature."""

    mean: F32
    scale: float

    @classmethod
    def fit(cls, x: F32) -> Standardizer:
        mean = x.mean(axis=0).astype(np.float32)
        scale = float(np.sqrt(np.mean((x - mean) ** 2))) or 1.0
        return cls(mean, scale)

    def __call__(self, x: F32) -> F32:
        out: F32 = ((x - self.mean) / np.float32(self.scale)).astype(np.float32)
        return out


def _objective(
    xs: F32, onehot: F32, l2: float, theta: npt.NDArray[np.float64]
) -> tuple[float, npt.NDArray[np.float64]]:
    """Mean cross-entropy + l2/2 * ||W||^2 and its gradient; theta = [W | b] flattened."""
    n, d = xs.shape
    c = onehot.shape[1]
    wb = theta.reshape(c, d + 1).astype(np.float32)
    w, b = wb[:, :d], wb[:, d]
    z = xs @ w.T + b
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    penalty = 0.5 * l2 * float((w.astype(np.float64) ** 2).sum())
    loss = -float((onehot * logp).sum()) / n + penalty
    g = (np.exp(logp) - onehot) / np.float32(n)
    grad = np.empty((c, d + 1), dtype=np.float64)
    grad[:, :d] = g.T @ xs + np.float32(l2) * w
    grad[:, d] = g.sum(axis=0)
    return loss, grad.reshape(-1)


Objective = Callable[[npt.NDArray[np.float64]], tuple[float, npt.NDArray[np.float64]]]


def _lbfgs(
    f: Objective, theta: npt.NDArray[np.float64], memory: int = 10
) -> tuple[npt.NDArray[np.float64], int]:
    """Limited-memory BFGS with a backtracking (Armijo) line search."""
    loss, grad = f(theta)
    s_hist: list[npt.NDArray[np.float64]] = []
    y_hist: list[npt.NDArray[np.float64]] = []
    it = 0
    while it < MAX_ITERATIONS:
        it += 1
        if float(np.abs(grad).max()) < TOLERANCE:
            break
        q = grad.copy()
        alphas = []
        for s_i, y_i in zip(reversed(s_hist), reversed(y_hist), strict=True):
            a = float(s_i @ q) / float(y_i @ s_i)
            alphas.append(a)
            q -= a * y_i
        if s_hist:
            q *= float(s_hist[-1] @ y_hist[-1]) / float(y_hist[-1] @ y_hist[-1])
        else:
            q /= max(1.0, float(np.abs(grad).max()))
        for s_i, y_i, a in zip(s_hist, y_hist, reversed(alphas), strict=True):
            q += (a - float(y_i @ q) / float(y_i @ s_i)) * s_i
        direction = -q
        slope = float(grad @ direction)
        if slope >= 0:  # not a descent direction: restart from the gradient
            s_hist.clear()
            y_hist.clear()
            direction, slope = -grad, -float(grad @ grad)
        step = 1.0
        while True:
            new_theta = theta + step * direction
            new_loss, new_grad = f(new_theta)
            if new_loss <= loss + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s_vec, y_vec = new_theta - theta, new_grad - grad
        if float(s_vec @ y_vec) > 1e-10:
            s_hist.append(s_vec)
            y_hist.append(y_vec)
            if len(s_hist) > memory:
                s_hist.pop(0)
                y_hist.pop(0)
        done = abs(loss - new_loss) <= 1e-9 * max(1.0, abs(loss))
        theta, loss, grad = new_theta, new_loss, new_grad
        if done:
            break
    return theta, it


def fit(
    x: F32,
    y: npt.NDArray[np.int64],
    classes: int,
    l2: float,
    init: FloatHead | None = None,
    std: Standardizer | None = None,
) -> tuple[FloatHead, Standardizer]:
    """Minimise mean cross-entropy + l2/2 * ||W||^2 (bias not penalised) with L-BFGS, on
    standardized features.

    Returns the head over the *raw* features, and the standardizer (to warm-start
    another fit on the same rows)."""
    std = std or Standardizer.fit(x)
    xs = std(x)
    d = xs.shape[1]
    onehot = np.zeros((xs.shape[0], classes), dtype=np.float32)
    onehot[np.arange(len(y)), y] = 1.0
    theta = np.zeros((classes, d + 1), dtype=np.float64)
    if init is not None:  # back to the standardized space
        theta[:, :d] = init.weights * std.scale
        theta[:, d] = init.bias + init.weights @ std.mean
    best, it = _lbfgs(lambda t: _objective(xs, onehot, l2, t), theta.reshape(-1))
    wb = best.reshape(classes, d + 1)
    raw_w = (wb[:, :d] / std.scale).astype(np.float32)
    raw_b = (wb[:, d] - raw_w @ std.mean).astype(np.float32)
    return FloatHead(raw_w, raw_b, l2, it), std


def quantize(
    head: FloatHead,
    feature_scale: float,
    feature_zero_point: int,
    calibration: F32,
    margin: float = 0.2,
) -> QuantizedHead:
    """int8 per-channel symmetric weights, int32 bias at feature_scale * weight_scale, and
    the logits' int8 range from the logits on ``calibration`` (the training features),
    widened by ``margin`` on each side and always covering 0."""
    w = head.weights
    amax = np.abs(w).max(axis=1)
    w_scale = np.where(amax > 0, amax / 127.0, 1e-9).astype(np.float32)
    wq = np.clip(np.rint(w / w_scale[:, None]), -127, 127).astype(np.int8)
    b_scale = np.float64(feature_scale) * w_scale.astype(np.float64)
    bq = np.clip(np.rint(head.bias / b_scale), -(2**31), 2**31 - 1).astype(np.int32)
    # logits as the integer layer computes them
    deq = wq.astype(np.float32) * w_scale[:, None]
    logits = calibration @ deq.T + (bq * b_scale).astype(np.float32)
    lo, hi = float(min(0.0, logits.min())), float(max(0.0, logits.max()))
    span = (hi - lo) or 1.0
    lo, hi = lo - margin * span, hi + margin * span
    scale = (hi - lo) / 255.0
    zero_point = int(np.clip(round(-128 - lo / scale), -128, 127))
    return QuantizedHead(wq, w_scale, bq, float(scale), zero_point)


def dequantize_features(q: npt.NDArray[np.int8], scale: float, zero_point: int) -> F32:
    out: F32 = (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return out


def confusion(truth: Sequence[int], predicted: Sequence[int], classes: int) -> list[list[int]]:
    m = np.zeros((classes, classes), dtype=np.int64)
    for t, p in zip(truth, predicted, strict=True):
        m[t, p] += 1
    return [[int(v) for v in row] for row in m]
