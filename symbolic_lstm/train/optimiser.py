"""Optimisers: plain SGD (the article's rule W* = W − α ∂Error/∂W) and Adam, either with optional clipping of the
gradient's global norm; their state is what a checkpoint stores."""

from __future__ import annotations

import numpy as np


class Optimizer:
    """SGD (W* = W − α g) or Adam, with optional global-norm clipping; updates arrays in place."""

    def __init__(self, kind: str, lr: float, clip: float | None) -> None:
        if kind not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {kind!r}")
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if clip is not None and not clip > 0:
            raise ValueError(f"clip must be positive (or None), got {clip}")
        self.kind, self.lr, self.clip = kind, lr, clip
        self.t = 0
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> float:
        """Update ``params`` from ``grads``; return the gradient's global norm before clipping."""
        norm = float(np.sqrt(sum(float(np.sum(g * g)) for g in grads.values())))
        factor = self.clip / norm if self.clip is not None and norm > self.clip else 1.0
        self.t += 1
        for name, g in grads.items():
            g = g * factor
            if self.kind == "sgd":
                params[name] -= self.lr * g  # the article's W* = W − α ∂Error/∂W
                continue
            m = self.m.setdefault(name, np.zeros_like(g))
            v = self.v.setdefault(name, np.zeros_like(g))
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            m_hat, v_hat = m / (1 - 0.9**self.t), v / (1 - 0.999**self.t)
            params[name] -= self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        return norm

    def state(self) -> dict[str, np.ndarray]:
        out = {f"m/{k}": v for k, v in self.m.items()} | {f"v/{k}": v for k, v in self.v.items()}
        return out | {"t": np.array(self.t)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.t = int(arrays.get("t", 0))
        self.m = {k[2:]: v.copy() for k, v in arrays.items() if k.startswith("m/")}
        self.v = {k[2:]: v.copy() for k, v in arrays.items() if k.startswith("v/")}


def update(opt: Optimizer, params: dict, head: dict, g: dict, gh: dict) -> None:
    """One optimiser step on the cell's and the head's parameters together (arrays updated in place): what a
    training step does with a batch's gradients, here or summed over Dask workers."""
    grads = {f"p/{n}": g[n] for n in params} | {f"head/{n}": v for n, v in gh.items()}
    both = {f"p/{n}": v for n, v in params.items()} | {f"head/{n}": v for n, v in head.items()}
    opt.step(both, grads)
