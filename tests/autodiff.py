"""An established autodiff library on a cell's own stages: PyTorch's autograd, the stages printed by SymPy's own
``TorchPrinter`` (never the package's printers), the package's functions replaced by their definitions first.

The third, independent witness beside the symbolic proof and the complex-step judge: :func:`torch_reference`
runs the cell's stages step by step with torch tensors and differentiates the same loss ``check`` uses —
½ Σ (ŷ − a)² over every step plus Σ v·s<t> for the extra state seeds given.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from symbolic_lstm.engine.cell import Cell, Linear, Reduce
from symbolic_lstm.engine.functions import rsqrt, softsign


def definitions(expr: sp.Expr) -> sp.Expr:
    """The package's functions written out as their definitions in SymPy's own functions (σ and log σ as torch's
    own ``sigmoid`` and ``logsigmoid``, exact in the tails as ours are: 1/(1 + e^{−z}) overflows in its backward
    for z ≪ 0, inf/inf = NaN), and constant subexpressions (tanh(1), √2) as floats: torch's functions take
    tensors, not Python numbers."""
    expr = expr.replace(softsign, lambda z: z / (1 + sp.Abs(z))).replace(rsqrt, lambda z: 1 / sp.sqrt(z))
    return expr.replace(lambda e: e.is_number and not e.is_Atom, lambda e: sp.Float(e.evalf(30), 30))


def _f64(code: str) -> str:
    return f"torch.as_tensor({code}, dtype=torch.float64)"


def _printer():
    from sympy.printing.pytorch import TorchPrinter

    class Printer(TorchPrinter):
        """SymPy's torch printer with the pieces it lacks for tensors beside Python numbers (a number made a
        tensor is float64: torch's default float32 would round Min(1/10, a)'s 1/10 to 0.10000000149)."""

        def _fold(self, name: str, args: tuple[sp.Expr, ...]) -> str:
            first, *rest = args
            if not rest:
                return self._print(first)
            other = self._fold(name, tuple(rest))
            return f"torch.{name}({_f64(self._print(first))}, {_f64(other)})"

        def _print_Max(self, e: sp.Expr) -> str:
            return self._fold("maximum", e.args)

        def _print_Min(self, e: sp.Expr) -> str:
            return self._fold("minimum", e.args)

        def _print_Heaviside(self, e: sp.Expr) -> str:
            """A step with zero derivative (torch.heaviside has none); H(0) = 0 unless the cell gives another."""
            h0 = e.args[1] if len(e.args) > 1 and e.args[1] != sp.S.Half else 0
            x = self._print(e.args[0])
            return (
                f"torch.where({_f64(x)} > 0, 1.0, torch.where({_f64(x)} == 0, "
                f"{self._print(h0)}, 0.0)).to(torch.float64)"
            )

        def _print_Piecewise(self, e: sp.Piecewise) -> str:
            """Nested ``torch.where`` with every branch a float64 tensor (torch.where of two Python numbers is
            float32); NaN where no condition holds."""
            out = _f64("float('nan')")
            for value, cond in reversed(e.args):
                v = _f64(self._print(value))
                out = v if cond is sp.true else f"torch.where(torch.as_tensor({self._print(cond)}), {v}, {out})"
            return out

        def _print_sigmoid(self, e: sp.Expr) -> str:
            return f"torch.sigmoid({_f64(self._print(e.args[0]))})"

        def _print_logsigmoid(self, e: sp.Expr) -> str:
            return f"torch.nn.functional.logsigmoid({_f64(self._print(e.args[0]))})"

        # SymPy may write a stage with re() and im() of real arguments (tanh's real part, |b^z| = b^re(z)): the
        # stages run on real tensors, where torch.imag is an error — re(u) is u and im(u) is 0 there
        def _print_re(self, e: sp.Expr) -> str:
            return _f64(self._print(e.args[0]))

        def _print_im(self, e: sp.Expr) -> str:
            return f"(0.0 * {_f64(self._print(e.args[0]))})"

    return Printer


def torch_reference(
    cell: Cell, p: dict, x: np.ndarray | dict, init: dict, y: np.ndarray, extra: dict | None = None
) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """The forward sequences (output, then the other states) and every gradient, by torch autograd in float64.

    ``x``: the one input's array (T, B, n_x), or every input of the cell by name (``{"x": …, "z": …}``); the
    gradients then hold every input's."""
    import torch

    printer = _printer()
    extra = extra or {}
    xs = x if isinstance(x, dict) else {cell.inputs[0]: x}
    assert set(xs) == set(cell.inputs), (sorted(xs), cell.inputs)
    tp = {n: torch.tensor(v, requires_grad=True) for n, v in p.items()}
    tx = {i: torch.tensor(v, requires_grad=True) for i, v in xs.items()}
    ti = {n: torch.tensor(v, requires_grad=True) for n, v in init.items()}
    fns = {
        st.name: sp.lambdify(
            [sp.Symbol(r) for r in st.reads], definitions(st.expr), modules=[{"torch": torch}, "torch"], printer=printer
        )
        for st in cell.stages
        if not isinstance(st, Linear)
    }
    state = {s: ti[f"{s}0"] for s in cell.states}
    seqs: dict[str, list] = {n: [] for n in cell.returns}
    E = 0
    for t in range(xs[cell.inputs[0]].shape[0]):
        env = {f"{s}_prev": state[s] for s in cell.states} | {i: v[t] for i, v in tx.items()}
        env |= {v: tp[v] for v in cell.vectors}
        for st in cell.stages:
            if isinstance(st, Linear):
                z = torch.cat([env[i] for i in st.inputs], 1) @ tp[st.weight].T
                env[st.name] = z if st.bias is None else z + tp[st.bias]
            else:
                v = fns[st.name](*(env[r] for r in st.reads))
                v = torch.as_tensor(v, dtype=torch.float64)
                env[st.name] = v.mean(-1, keepdim=True) if isinstance(st, Reduce) else v
        state = {s: env[s] for s in cell.states}
        for n in cell.returns:
            seqs[n].append(env[n])
        E = E + 0.5 * ((env[cell.output] - torch.tensor(y[t])) ** 2).sum()
        for s, v in extra.items():
            E = E + (env[s] * torch.tensor(v[t])).sum()
    E.backward()
    grads = {n: _grad(v) for n, v in tp.items()} | {i: _grad(v) for i, v in tx.items()}
    grads |= {n: _grad(v) for n, v in ti.items()}
    return [torch.stack(seqs[n]).detach().numpy() for n in cell.returns], grads


def _grad(t) -> np.ndarray:
    """A leaf's gradient (zeros where nothing it reaches was differentiable: a step's zero derivative)."""
    return np.zeros(tuple(t.shape)) if t.grad is None else t.grad.numpy()


#: The round-off floor of a backward pass, relative to its largest gradient entry: a gradient that is all
#: cancellation — 1 − tanh²(u) of a saturated tanh is ~ε absolute whatever its true size, times O(1) factors,
#: summed over steps and rows — is round-off in both implementations (a random cell of the slow suite: W1 at
#: 1e-14 in ours, 5e-17 in autograd's, every other gradient O(1)); a right module agrees to this much.
ROUNDOFF = 1e-12


def assert_agrees(ours: dict, theirs: dict, rtol: float = 1e-10) -> None:
    """Every gradient within ``rtol`` of autograd's, relative to its own largest entry where entries vanish, and
    never closer than :data:`ROUNDOFF` times the largest entry of any gradient."""
    assert set(ours) == set(theirs), (sorted(ours), sorted(theirs))
    overall = max((float(np.max(np.abs(t), initial=0.0)) for t in theirs.values()), default=0.0) or 1.0
    for n, g in ours.items():
        scale = float(np.max(np.abs(theirs[n]))) or 1.0
        atol = max(rtol * scale, ROUNDOFF * overall)
        np.testing.assert_allclose(np.asarray(g), theirs[n], rtol=rtol, atol=atol, err_msg=n)
