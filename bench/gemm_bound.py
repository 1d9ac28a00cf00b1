"""The GEMM bound: only the matrix products an LSTM's forward and backward must do, timed in NumPy.

Per sequence (fused gates, 4·n_a columns): the input projection of all steps, one hidden product per step
after the first (a<0> = 0), one hidden product per step backward, the two weight-gradient products and the
input-gradient product.  Outputs are preallocated, so this is BLAS time and nothing else: no LSTM on this
BLAS can do the same products faster.
"""

from __future__ import annotations

import numpy as np


class GemmBound:
    def __init__(self, T: int, B: int, n_x: int, n_a: int, dtype, rng: np.random.Generator) -> None:
        self.T = T
        r = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
        self.x = r(T * B, n_x)
        self.W_x, self.W_a = r(n_x, 4 * n_a), r(n_a, 4 * n_a)
        self.W_a_T = np.ascontiguousarray(self.W_a.T)
        self.a = r(T, B, n_a)
        self.S = np.empty((T, B, 4 * n_a), dtype)
        self.dS = r(T, B, 4 * n_a)
        self.da = np.empty((B, n_a), dtype)
        self.dW_a, self.dW_x = np.empty((4 * n_a, n_a), dtype), np.empty((4 * n_a, n_x), dtype)
        self.dx = np.empty((T * B, n_x), dtype)

    def __call__(self) -> None:
        T = self.T
        np.matmul(self.x, self.W_x, out=self.S.reshape(T * len(self.a[0]), -1))
        for t in range(1, T):
            np.matmul(self.a[t - 1], self.W_a, out=self.S[t])
        for t in range(T - 1, -1, -1):
            np.matmul(self.dS[t], self.W_a_T, out=self.da)
        dS2 = self.dS.reshape(-1, self.dS.shape[-1])
        np.matmul(dS2.T, self.a.reshape(-1, self.a.shape[-1]), out=self.dW_a)
        np.matmul(dS2.T, self.x, out=self.dW_x)
        np.matmul(dS2, self.W_x.T, out=self.dx)
