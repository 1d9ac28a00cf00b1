"""Per-sequence lengths: a padded batch gives exactly what running each sequence alone gives.

The definition is checked directly, with no shared code: each sequence b is run by itself over its first
lengths[b] steps (the same module, lengths=None), its seeds are the padded batch's seeds at those steps — a
non-output state's seeds after the end added to its last step, where the carried state is the same value — and
the batch's gradients must be the per-sequence ones (parameters: summed over the batch; inputs after the end: 0).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
import sympy as sp

from symbolic_lstm import get_cell, load
from symbolic_lstm.codegen.pipeline import module_name, write_checked
from symbolic_lstm.document.emit_latex import DerivationDocument
from symbolic_lstm.engine.cell import Cell, CellBuilder
from symbolic_lstm.engine.functions import sigmoid
from symbolic_lstm.engine.lengths import MASK, CarryOver, carry_over, kernel_rule_holds

BUILT_INS = ["lstm", "gru", "gru_torch", "rnn", "peephole", "cifg", "layernorm"]
TOL = dict(rtol=1e-10, atol=1e-12)  # the batch's products and one row's differ in rounding only


def stages_cell() -> Cell:
    """Reads its input unit by unit: the stage-by-stage NumPy layout; two states, the output one of them."""
    b = CellBuilder("lengths_stages", inputs=("x",), states=("a", "c"), output="a", square=True)
    a, c, x = b.prev("a"), b.prev("c"), b.input("x")
    r = b.stage("r", sigmoid(b.linear("sum_r", [a, x], weight="W_r", bias="b_r")))
    z = b.stage("z", sp.tanh(b.linear("sum_z", [a], weight="W_z", bias=None)))
    b.stage("c", r * c + (1 - r) * x)
    b.stage("a", r * z + (1 - r) * sp.tanh(c))
    return b.build()


def _problem(k: ModuleType, T: int, B: int, n: int, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    init_params = getattr(k, "init_params", None) or load(k.CELL).init_params  # the array-API module has none
    p = init_params(n, n, seed=seed)
    x = rng.normal(size=(T, B, n))
    init = {f"{s}0": 0.5 * rng.normal(size=(B, n)) for s in k.STATES}
    seeds = {s: rng.normal(size=(T, B, n)) for s in k.RETURNS}
    return p, x, init, seeds


def _backward(k: ModuleType, cache: dict, seeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    first, *rest = k.RETURNS
    g = k.backward(seeds[first], cache, **{f"d{s}": seeds[s] for s in rest})
    return {key: np.asarray(v) for key, v in g.items()}  # JAX arrays as NumPy ones (+= would make them JAX's)


def check_against_alone(k: ModuleType, lengths: list[int], n: int = 3, seed: int = 0) -> None:
    """The module's padded batch with ``lengths`` against each sequence run alone."""
    T, B = max(lengths) + 1, len(lengths)  # one step of padding at least, for every sequence
    p, x, init, seeds = _problem(k, T, B, n, seed)
    L = np.array(lengths)
    *seqs, cache = k.forward(x, p, **init, lengths=L)
    seqs = {s: np.asarray(seq) for s, seq in zip(k.RETURNS, seqs, strict=True)}
    grads = _backward(k, cache, seeds)
    total = {name: np.zeros_like(v) for name, v in p.items()}
    for b, n_b in enumerate(lengths):
        alone_init = {key: v[b : b + 1] for key, v in init.items()}
        *alone, alone_cache = k.forward(x[:n_b, b : b + 1], p, **alone_init)
        alone = {s: np.asarray(seq) for s, seq in zip(k.RETURNS, alone, strict=True)}
        for s, seq in seqs.items():
            np.testing.assert_allclose(seq[:n_b, b], alone[s][:, 0], **TOL, err_msg=f"{s}, sequence {b}")
            if s == k.OUTPUT:
                assert not seq[n_b:, b].any(), f"the output of sequence {b} is not 0 after its end"
            else:  # the state is carried: its value at the end, at every later step
                np.testing.assert_array_equal(seq[n_b:, b], np.broadcast_to(seq[n_b - 1, b], seq[n_b:, b].shape))
        alone_seeds = {}
        for s, d in seeds.items():
            mine = d[:n_b, b : b + 1].copy()
            if s != k.OUTPUT:
                mine[-1] += d[n_b:, b].sum(axis=0)  # a seed on the carried state reaches the state at the end
            alone_seeds[s] = mine
        g = _backward(k, alone_cache, alone_seeds)
        for name in p:
            total[name] += g[name]
        np.testing.assert_allclose(grads[k.INPUT][:n_b, b], g[k.INPUT][:, 0], **TOL, err_msg=f"d{k.INPUT}, {b}")
        assert not grads[k.INPUT][n_b:, b].any(), f"padding of sequence {b} received a gradient"
        for s in k.STATES:
            np.testing.assert_allclose(grads[f"{s}0"][b], g[f"{s}0"][0], **TOL, err_msg=f"d{s}0, sequence {b}")
    for name in p:
        np.testing.assert_allclose(grads[name], total[name], **TOL, err_msg=name)


@pytest.mark.parametrize("suffix", ["", "_array_api", "_jax"], ids=["numpy", "array-api", "jax"])
@pytest.mark.parametrize("cell", BUILT_INS)
def test_each_sequence_as_if_alone(cell, suffix):
    if suffix == "_jax":
        pytest.importorskip("jax")
    check_against_alone(load(cell + suffix), [3, 1, 5, 3, 2])


def test_the_stage_by_stage_layout_too(tmp_path):
    cell = stages_cell()
    write_checked(cell, "numpy", tmp_path)
    k = load(module_name(cell, "numpy"), tmp_path)
    assert k.LAYOUT == "stages"
    check_against_alone(k, [2, 4, 1])


def test_full_lengths_are_the_plain_kernels():
    k = load("lstm")
    p, x, init, _ = _problem(k, 4, 3, 2, 1)
    plain = k.forward(x, p, **init)
    full = k.forward(x, p, **init, lengths=[4, 4, 4])
    for a, b in zip(plain[:-1], full[:-1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_lengths_do_not_mutate_the_seeds():
    k = load("lstm")
    p, x, init, seeds = _problem(k, 4, 2, 2, 2)
    before = {s: d.copy() for s, d in seeds.items()}
    *_, cache = k.forward(x, p, **init, lengths=[2, 4])
    _backward(k, cache, seeds)
    for s in seeds:
        np.testing.assert_array_equal(seeds[s], before[s])


@pytest.mark.parametrize(
    "lengths, error, match",
    [
        ([3, 0], ValueError, r"lengths must lie in 1\.\.T = 1\.\.3, got values from 0 to 3"),
        ([3, 4], ValueError, r"lengths must lie in 1\.\.T = 1\.\.3"),
        ([3], ValueError, r"lengths must have shape \(B,\) = \(2,\)"),
        ([[3, 3]], ValueError, r"lengths must have shape \(B,\) = \(2,\)"),
        ([3.0, 2.0], TypeError, r"lengths must be integers"),
        ([True, True], TypeError, r"lengths must be integers"),
    ],
)
def test_bad_lengths_are_named(lengths, error, match):
    k = load("lstm")
    p, x, _, _ = _problem(k, 3, 2, 2, 0)
    with pytest.raises(error, match=match):
        k.forward(x, p, lengths=np.array(lengths))


@pytest.mark.parametrize("cell", BUILT_INS)
def test_the_kernels_rule_is_the_derived_select_rule(cell):
    """The engine differentiates the carry-over select; at m = 1 and m = 0 its rule is what the kernels do."""
    c = get_cell(cell)
    selects = carry_over(c.states, c.output)
    assert [s.name for s in selects] == [*c.states, c.output]
    assert all(kernel_rule_holds(s) for s in selects)


def test_a_select_whose_rule_is_not_the_kernels_is_refused():
    """The check can fail: a select that keeps the step's value after the end (no mask on s~), or that drops the
    carried state, has another rule."""

    class NoMask(CarryOver):
        @property
        def value(self):
            return self.step + (1 - MASK) * self.prev

    class Drops(CarryOver):
        @property
        def value(self):
            return MASK * self.step

    for wrong in (NoMask, Drops):
        sel = wrong("c", False, sp.Symbol("c~"), sp.Symbol("c_prev"), sp.Symbol("delta_c"))
        assert not kernel_rule_holds(sel), wrong.__name__


def test_the_derivation_document_shows_the_select():
    body = DerivationDocument(get_cell("lstm")).standalone()
    section = body[body.index(r"\section*{Batches of different lengths}") :]
    assert r"c^{<t>} &= m^{<t>}\, \tilde{c}^{<t>} + (1 - m^{<t>})\, c^{<t-1>}" in section
    assert r"\delta c^{<t-1>} \mathrel{+}= (1 - m^{<t>})\, \delta c^{<t>}" in section


def test_the_jax_bridge_takes_lengths_under_jit_vmap_and_grad():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from symbolic_lstm.jax import recurrent

    run, lengths = recurrent("lstm"), [4, 1, 3]
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        p = {n: jnp.asarray(v) for n, v in load("lstm").init_params(2, 3, seed=0).items()}
        x, y = jnp.asarray(rng.normal(size=(4, 3, 2))), jnp.asarray(rng.normal(size=(4, 3, 3)))

        def loss(p, x, y, lengths=None):
            return jnp.sum((run(p, x, lengths=lengths) - y) ** 2)

        g_p, g_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(p, x, y, jnp.asarray(lengths))
        total = {n: np.zeros(v.shape) for n, v in p.items()}
        for b, n in enumerate(lengths):
            a_p, a_x = jax.grad(loss, argnums=(0, 1))(p, x[:n, b : b + 1], y[:n, b : b + 1])
            for name in p:
                total[name] += np.asarray(a_p[name])
            np.testing.assert_allclose(np.asarray(g_x[:n, b]), np.asarray(a_x[:, 0]), **TOL)
            assert not np.asarray(g_x[n:, b]).any()
        for name in p:
            np.testing.assert_allclose(np.asarray(g_p[name]), total[name], **TOL, err_msg=name)
        both = jax.vmap(lambda x, L: run(p, x, lengths=L))(jnp.stack([x, x]), jnp.asarray([lengths, [1, 4, 4]]))
        np.testing.assert_allclose(np.asarray(both[0]), np.asarray(run(p, x, lengths=jnp.asarray(lengths))), **TOL)
        assert not np.asarray(both[1][1:, 0]).any() and np.asarray(both[1][:, 1]).all()
        with pytest.raises(ValueError, match=r"lengths must have shape \(B,\) = \(3,\)"):
            run(p, x, lengths=jnp.asarray([4, 1]))
        with pytest.raises(TypeError, match="lengths must be integers"):
            run(p, x, lengths=jnp.asarray([4.0, 1.0, 3.0]))
