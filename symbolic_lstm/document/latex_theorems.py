"""The standalone derivation's closing sections, each a statement about the per-step equations rather than one
of them: why they hold for every sequence length (the one-step lemma and the induction ``prove`` checks), for every
width (each stage kind's rule proved at symbolic sizes), and how a padded batch of sequences of different lengths
goes through them (the carry-over select, :mod:`symbolic_lstm.engine.lengths`).
"""

from __future__ import annotations

import sympy as sp

from ..engine.cell import Cell
from ..engine.lengths import MASK, carry_over

__all__ = ["every_n", "every_t", "lengths_section"]


def every_t(cell: Cell) -> str:
    """The section that says why the per-step equations give the gradients for every sequence length: the
    one-step lemma ``symbolic-lstm prove`` checks, and the induction over T (:mod:`symbolic_lstm.proof.step`)."""
    states = [cell.latex_name(s) for s in cell.states]
    lam = " + ".join(r"\langle \lambda_{%s}, %s^{<t>} \rangle" % (s, s) for s in states)
    prev = ", ".join(f"{s}^{{<t-1>}}" for s in states)
    out = cell.latex_name(cell.output)
    return "\n".join(
        [
            r"\section*{Why these equations hold for every $T$ and every $n$}",
            r"\textbf{Lemma (one step).} Let $\lambda_{s}$ be any adjoint arriving at each state $s^{<t>}$ from the "
            r"steps after $t$, and let",
            r"\[ L = %s + [\,E^{<t>}\,], \]" % lam,
            r"with the step's Error $E^{<t>}$ of $%s^{<t>}$ scored or not. The backward equations above, with "
            r"$\partial E^{<t+1>}/\partial s^{<t>} = \lambda_s$, give exactly $\partial L/\partial(%s)$, "
            r"$\partial L/\partial x^{<t>}$ and this step's $\partial L/\partial \theta$: "
            r"\texttt{symbolic-lstm prove} checks this identity by direct differentiation of $L$ at exact random "
            r"rational points, at $n_a = n_x \in \{1, 2\}$." % (out, prev),
            "",
            r"\textbf{Induction over $T$.} The Error over $T$ steps is $E = \sum_t E^{<t>}$ with $\theta$ shared. "
            r"Backpropagation starts from $\lambda^{<T>} = 0$ (nothing follows the last step) and at $t = T, \dots, 1$ "
            r"applies the lemma with $\lambda^{<t>}$ the $\delta$ of the states that step $t+1$ returned. By the "
            r"lemma that $\delta$ is $\partial(E^{<t+1>} + \dots + E^{<T>})/\partial s^{<t>}$ exactly, so by "
            r"induction on $T - t$ every step's $\delta$ is exact, $\partial E/\partial x^{<t>}$ is step $t$'s, and "
            r"$\partial E/\partial \theta = \sum_t$ (step $t$'s contribution). Many-to-one scores $E^{<T>}$ only. "
            r"The boundary, the sums over steps and the scoring are checked against the unrolled Error at $T = 1$ "
            r"and $T = 2$; the lemma is the same statement for every $t$, so the gradients are exact for every $T$.",
            "",
            every_n(cell),
        ]
    )


def every_n(cell: Cell) -> str:
    """The paragraph that says why the lemma holds for every width: each stage kind's rule proved at symbolic
    sizes (:mod:`symbolic_lstm.proof.rules`), the wiring checked at the sizes tried."""
    means = any(st.rule == "mean" for st in cell.stages)
    mean = (
        r" A mean $\mu = \frac{1}{n}\sum_{i=1}^{n} f(v_i)$: $\delta v_p = \delta\mu \cdot \frac{1}{n}\,"
        r"\partial f/\partial v$ at unit $p$."
        if means
        else ""
    )
    sizes = (
        r"$n_a = n_x \in \{1, 2\}$"
        if not cell.scalars
        else "$n_a = n_x = 2$"
        if cell.square
        else "$n_a = 2$, $n_x = 1$"
    )
    return "\n".join(
        [
            r"\textbf{Every $n$.} \texttt{symbolic-lstm prove} also proves each stage kind's rule, as the engine "
            r"produces it, at symbolic sizes ($n$ units, $m_i$ columns per operand, $B$ rows), in index notation "
            r"with symbolic bounds, decided exactly. A linear stage $\mathrm{sum} = W[u_1, \dots, u_k] + b$: with "
            r"$\Lambda$ the $\delta$ of the sum, $\delta u_i = \Lambda\, W_{:,\,\mathrm{block}\ i}$, "
            r"$\delta W = \Lambda^{\top}[u_1, \dots, u_k]$, $\delta b = \sum_{\mathrm{rows}} \Lambda$ "
            r"(block $i$ the columns $m_1 + \dots + m_{i-1}$ onwards). An elementwise stage $y_i = f(v_i)$, for a "
            r"generic $f$: $\delta v_p = \delta y_p \cdot \partial f/\partial v$ at unit $p$ and no other unit; a "
            r"row scalar $r$ read by every unit, $\delta r = \sum_{i=1}^{n} \delta y_i\, \partial f/\partial r$."
            + mean
            + r" The Error $\sum_i \frac{1}{2}(\hat{a}_i - a_i)^2$: $\partial E/\partial a_p = a_p - \hat{a}_p$. "
            r"One step's backward composes these rules along the step's graph, forks adding; that wiring is one "
            r"expression, the same at every size, and the lemma at "
            + sizes
            + r" checks it. So the equations above are exact for every $T$ and every $n_a$, $n_x$.",
            "",
        ]
    )


def lengths_section(cell: Cell) -> str:
    """The carry-over select of a padded batch (:mod:`symbolic_lstm.engine.lengths`) and its δ rule, as the engine
    derives it, for each of the cell's states and its output."""
    mask = r"m^{<t>}"
    lines = [
        r"\section*{Batches of different lengths}",
        r"A sequence of $L$ steps in a batch padded to $T$ steps has the mask $%s = [\,t \le L\,]$. "
        r"After the cell's step $\tilde{s}^{<t>}$ every state $s$ and the output pass through a select, "
        r"differentiated like any stage:" % mask,
        r"\begin{align*}",
    ]
    for sel in carry_over(cell.states, cell.output):
        name = cell.latex_name(sel.name)
        m = {MASK: sp.Symbol(mask)}
        if sel.output:
            lines.append(r"\bar{%s}^{<t>} &= %s\, %s^{<t>} & " % (name, mask, name))
            coef = _factor(sel.rule[sel.step] / sel.delta, m)
            lines.append(r"\delta %s^{<t>} &= %s\, \delta\bar{%s}^{<t>} \\" % (name, coef, name))
            continue
        lines.append(r"%s^{<t>} &= %s\, \tilde{%s}^{<t>} + (1 - %s)\, %s^{<t-1>} & " % (name, mask, name, mask, name))
        step, prev = (_factor(sel.rule[o] / sel.delta, m) for o in (sel.step, sel.prev))
        lines.append(
            r"\delta\tilde{%s}^{<t>} &= %s\, \delta %s^{<t>}, \quad " % (name, step, name)
            + r"\delta %s^{<t-1>} \mathrel{+}= %s\, \delta %s^{<t>} \\" % (name, prev, name)
        )
    lines[-1] = lines[-1].removesuffix(r" \\")
    lines += [
        r"\end{align*}",
        r"So a sequence's gradients are those of running it alone: after its end the step receives no $\delta$, "
        r"a state's $\delta$ reaches its value at the end unchanged, and the output's seeds there are dropped.",
        "",
    ]
    return "\n".join(lines)


def _factor(e: sp.Expr, names: dict[sp.Expr, sp.Expr]) -> str:
    """A δ rule's factor as LaTeX, in parentheses when it is a sum (``(1 - m^{<t>})``)."""
    e = sp.simplify(e)
    tex = sp.latex(e.subs(names))
    return f"({tex})" if e.is_Add else tex
