"""Loss heads beyond the article's ½(â − a)²: softmax cross-entropy over an output projection.

The head of the course notebooks: z<t> = W_y a<t> + b_y (n_y logits), ŷ<t> = softmax(z<t>),
Error<t> = −Σ_k y<t>_k log ŷ<t>_k for a one-hot target y<t> (the label's class).

Nothing here is typed in from a table: the loss is written with SymPy sums over the n_y classes
(``IndexedBase``), differentiated with respect to one logit z_k, and the result — exp(z_k)/Σ_j exp(z_j)
times Σ_j y_j, minus y_k — is reduced with the one-hot condition Σ_j y_j = 1 and checked to be exactly
softmax_k − y_k.  The projection's rules (∂E/∂W_y, ∂E/∂b_y, ∂E/∂a) come from the same matrix calculus
as every linear stage (:func:`symbolic_lstm.engine.derivation.linear_rules`).  The kernels evaluate the softmax
through log-sum-exp (logits shifted by their maximum), so no logit overflows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp
from sympy.simplify.simplify import factor_sum

from .cell import Linear
from .derivation import LinearRules, linear_rules


@dataclass(frozen=True)
class SoftmaxCEDerivation:
    """The softmax cross-entropy head, derived.

    Attributes:
        loss: Error in the classes' sums, in z[j], y[j] (IndexedBase) over j = 0 … n_y − 1.
        raw: ∂loss/∂z[k] as SymPy differentiates it (sums with Kronecker deltas).
        dz: ∂Error/∂z_k for 0 ≤ k < n_y, after Σ_j y_j = 1, in the symbols ``p`` (softmax_k) and ``y`` (y_k).
        rules: reverse rules of the projection z = a W_yᵀ + b_y (batch rows).
    """

    loss: sp.Expr
    raw: sp.Expr
    dz: sp.Expr
    rules: LinearRules
    softmax: sp.Expr
    z: sp.IndexedBase
    y: sp.IndexedBase
    k: sp.Symbol
    n: sp.Symbol


@cache
def softmax_ce() -> SoftmaxCEDerivation:
    """Derive the head (cached: the derivation is the same for every cell)."""
    j, k = sp.symbols("j k", integer=True)
    n = sp.Symbol("n_y", integer=True, positive=True)
    z, y = sp.IndexedBase("z"), sp.IndexedBase("y")
    lse = sp.log(sp.Sum(sp.exp(z[j]), (j, 0, n - 1)))
    loss = -sp.Sum(y[j] * (z[j] - lse), (j, 0, n - 1))  # −Σ_j y_j log softmax_j
    raw = sp.diff(loss, z[k])
    evaluated = raw.doit()
    inside = _branch_for_valid_index(evaluated, k, n)
    softmax = sp.exp(z[k]) / sp.Sum(sp.exp(z[j]), (j, 0, n - 1))
    p, yk = sp.Symbol("p"), sp.Symbol("y")
    # pull what does not depend on j out of the sums, then use that a one-hot target sums to 1
    inside = inside.replace(lambda e: isinstance(e, sp.Sum), lambda e: factor_sum(e))
    one_hot = {sp.Sum(y[j], (j, 0, n - 1)): sp.S.One}
    dz = sp.expand(inside.xreplace(one_hot)).xreplace({softmax: p, y[k]: yk})
    if sp.expand(dz - (p - yk)) != 0:  # pragma: no cover - would mean SymPy changed its answer
        raise AssertionError(f"softmax cross-entropy derivative came out as {dz}, not p - y")
    rules = linear_rules(Linear("z", ("a",), "W_y", "b_y"))
    return SoftmaxCEDerivation(loss, raw, dz, rules, softmax, z, y, k, n)


@dataclass(frozen=True)
class LinearMSEDerivation:
    """The regression head z = W_y a + b_y, Error = ½ Σ_k (z_k − y_k)², derived like the softmax head."""

    loss: sp.Expr
    dz: sp.Expr  # ∂Error/∂z_k in the symbols ``z`` and ``y``
    rules: LinearRules


@cache
def linear_mse() -> LinearMSEDerivation:
    """Derive the regression head (cached)."""
    j, k = sp.symbols("j k", integer=True)
    n = sp.Symbol("n_y", integer=True, positive=True)
    z, y = sp.IndexedBase("z"), sp.IndexedBase("y")
    loss = sp.Sum(sp.Rational(1, 2) * (z[j] - y[j]) ** 2, (j, 0, n - 1))
    inside = _branch_for_valid_index(sp.diff(loss, z[k]).doit(), k, n)
    dz = sp.expand(inside).xreplace({z[k]: sp.Symbol("z"), y[k]: sp.Symbol("y")})
    if sp.expand(dz - (sp.Symbol("z") - sp.Symbol("y"))) != 0:  # pragma: no cover
        raise AssertionError(f"regression derivative came out as {dz}, not z - y")
    return LinearMSEDerivation(loss, dz, linear_rules(Linear("z", ("a",), "W_y", "b_y")))


def _branch_for_valid_index(expr: sp.Expr, k: sp.Symbol, n: sp.Symbol) -> sp.Expr:
    """``Piecewise((value, 0 <= k < n), (0, True))`` → value; the expression itself if it is no Piecewise."""
    if not isinstance(expr, sp.Piecewise):
        expr = sp.piecewise_fold(expr)
    if isinstance(expr, sp.Piecewise):
        for value, cond in expr.args:
            if cond is not sp.true and cond.subs({k: 0, n: 1}) is sp.true:
                return value
        raise AssertionError(f"no branch of {expr} holds for 0 <= k < n_y")  # pragma: no cover
    return expr


def latex() -> str:
    """The head's derivation as LaTeX (an align* block): the loss, SymPy's derivative, its one-hot form, and
    the projection's rules from matrix calculus, with δZ = Ŷ − Y (one row per scored step and batch row)."""
    h = softmax_ce()
    r = h.rules
    rows_n = r.D.shape[0]
    dZ = sp.MatrixSymbol(r"\delta Z", rows_n, r.D.shape[1])
    A = sp.MatrixSymbol("A", *r.Z["a"].shape)
    W = sp.MatrixSymbol("W_{y}", *r.W["a"].shape)
    p, y = sp.Symbol(r"\hat{y}_{k}"), sp.Symbol("y_{k}")
    dz = h.dz.xreplace({sp.Symbol("p"): p, sp.Symbol("y"): y})
    rows = [
        r"z^{<t>} &= W_y a^{<t>} + b_y, \qquad \hat{y}^{<t>}_k = \frac{e^{z_k}}{\sum_{j=0}^{n_y-1} e^{z_j}}",
        r"\mathrm{Error}^{<t>} &= %s" % sp.latex(h.loss),
        r"\frac{\partial \mathrm{Error}^{<t>}}{\partial z_k} &= %s" % sp.latex(h.raw),
        r"&= %s \qquad \text{(one-hot target: } \textstyle\sum_j y_j = 1\text{)}" % sp.latex(dz),
        r"\frac{\partial \mathrm{Error}}{\partial W_y} &= %s"
        % sp.latex(r.weight["a"].xreplace({r.D: dZ, r.Z["a"]: A})),
        r"\frac{\partial \mathrm{Error}}{\partial b_y} &= %s" % sp.latex(r.bias.xreplace({r.D: dZ})),
        r"\frac{\partial \mathrm{Error}}{\partial A} &= %s" % sp.latex(r.operand["a"].xreplace({r.D: dZ, r.W["a"]: W})),
    ]
    return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}\n"
