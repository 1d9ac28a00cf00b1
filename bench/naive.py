"""The naive baseline: a per-time-step NumPy LSTM in the style of the well-known course notebooks.

Column-major (n, B) arrays, the concatenation [a<t-1>; x<t>] rebuilt every step, four separate gate
products per step, sigmoid as 1/(1 + exp(−z)), weight gradients accumulated per step.  Written by hand
for the benchmark only; its gradients are checked against the generated kernels in ``run.py``.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def forward(x, p, a0, c0):
    """x (T, B, n_x) → a (T, B, n_a) and the per-step caches."""
    T = x.shape[0]
    a_prev, c_prev = a0.T, c0.T
    caches, outs = [], []
    for t in range(T):
        concat = np.concatenate([a_prev, x[t].T], axis=0)
        ft = sigmoid(p["W_f"] @ concat + p["b_f"][:, None])
        it = sigmoid(p["W_u"] @ concat + p["b_u"][:, None])
        cct = np.tanh(p["W_c"] @ concat + p["b_c"][:, None])
        ot = sigmoid(p["W_o"] @ concat + p["b_o"][:, None])
        c_next = ft * c_prev + it * cct
        a_next = ot * np.tanh(c_next)
        caches.append((a_next, c_next, a_prev, c_prev, ft, it, cct, ot, concat))
        outs.append(a_next.T)
        a_prev, c_prev = a_next, c_next
    return np.stack(outs), caches


def backward(da, caches, p):
    """da (T, B, n_a) → gradients of every parameter, x, a0, c0."""
    T = len(caches)
    n_a = p["b_f"].shape[0]
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dx = []
    da_prev = np.zeros_like(caches[0][0])
    dc_prev = np.zeros_like(caches[0][1])
    for t in reversed(range(T)):
        _a_next, c_next, _a_prev, c_prev, ft, it, cct, ot, concat = caches[t]
        da_t = da[t].T + da_prev
        tanh_c = np.tanh(c_next)
        dc_t = dc_prev + da_t * ot * (1 - tanh_c**2)
        dot = da_t * tanh_c * ot * (1 - ot)
        dcct = dc_t * it * (1 - cct**2)
        dit = dc_t * cct * it * (1 - it)
        dft = dc_t * c_prev * ft * (1 - ft)
        for name, d in (("f", dft), ("u", dit), ("c", dcct), ("o", dot)):
            g[f"W_{name}"] += d @ concat.T
            g[f"b_{name}"] += d.sum(axis=1)
        dconcat = p["W_f"].T @ dft + p["W_u"].T @ dit + p["W_c"].T @ dcct + p["W_o"].T @ dot
        da_prev = dconcat[:n_a]
        dx.append(dconcat[n_a:].T)
        dc_prev = dc_t * ft
    g["x"] = np.stack(dx[::-1])
    g["a0"] = da_prev.T
    g["c0"] = dc_prev.T
    return g
