"""RecurrentLayer as a drop-in for nn.LSTM / nn.GRU: every configuration (layers, directions, bias, batch_first,
packed sequences) computes what torch's module computes, outputs, final states and every gradient, through the
converters both ways; dropout sits between layers only; bad input is named."""

from __future__ import annotations

import copy
import importlib.util
import io
import itertools
import subprocess
import sys
import zlib

import numpy as np
import pytest
import sympy as sp

from symbolic_lstm import CellBuilder, sigmoid

torch = pytest.importorskip("torch", reason="torch not installed (pip install '.[torch]')")

from torch.func import functional_call  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from symbolic_lstm.bridges.torch import RecurrentLayer, from_torch, suffix, to_torch, without_biases  # noqa: E402

F64 = torch.float64
TORCH = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def _tuple(h):
    return (h,) if isinstance(h, torch.Tensor) else tuple(h)


def _torch_grads(layer: RecurrentLayer, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our parameters' gradients in torch's layout, through the converter (each b in bias_ih, bias_hh zero but
    GRU's b_hn)."""
    twin = copy.deepcopy(layer)
    twin.load_params(grads)
    return to_torch(twin).state_dict()


def _compare_grads(module, layer, ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], H: int):
    mapped = _torch_grads(layer, ours)
    assert mapped.keys() == theirs.keys()
    for name, want in theirs.items():
        got = mapped[name]
        if name.startswith("bias_hh"):  # torch's bias_hh gets what its bias_ih gets (they add), GRU's n apart
            ih = mapped[name.replace("bias_hh", "bias_ih")]
            got = ih if isinstance(module, torch.nn.LSTM) else torch.cat([ih[: 2 * H], got[2 * H :]])
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10, err_msg=name)


def _parity(kind: str, num_layers: int, bidirectional: bool, batch_first: bool, bias: bool, packed: bool) -> None:
    """Outputs, final states and the gradients of a random loss of both w.r.t. input, hx and every parameter."""
    seed = zlib.crc32(repr((kind, num_layers, bidirectional, batch_first, bias, packed)).encode())
    torch.manual_seed(seed)
    I, H, T, B, D = 3, 4, 5, 3, 1 + bidirectional
    module = TORCH[kind](I, H, num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional, dtype=F64)
    layer = from_torch(module)
    x = torch.randn(*((B, T) if batch_first else (T, B)), I, dtype=F64, requires_grad=True)
    hx = tuple(torch.randn(D * num_layers, B, H, dtype=F64, requires_grad=True) for _ in layer.states)
    h0 = hx[0] if len(hx) == 1 else hx
    lengths = torch.tensor([T, 2, 4])  # unsorted: the packed batch is reordered and back
    results = []
    for m in (module, layer):  # each packs its own: the two gradients run through two graphs
        inp = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False) if packed else x
        out, h_n = m(inp, h0)
        if packed:
            assert torch.equal(out.batch_sizes, inp.batch_sizes) and torch.equal(out.sorted_indices, inp.sorted_indices)
            assert torch.equal(out.unsorted_indices, inp.unsorted_indices)
            out = out.data
        results.append((out, _tuple(h_n)))
    (out_t, h_t), (out_o, h_o) = results
    assert out_o.shape == out_t.shape and [h.shape for h in h_o] == [h.shape for h in h_t] == [
        (D * num_layers, B, H)
    ] * len(hx)
    np.testing.assert_allclose(out_o.detach(), out_t.detach(), rtol=1e-9, atol=1e-10)
    for a, b in zip(h_o, h_t, strict=True):
        np.testing.assert_allclose(a.detach(), b.detach(), rtol=1e-9, atol=1e-10)
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(out_t.shape, dtype=F64, generator=g)
    v = [torch.randn(h.shape, dtype=F64, generator=g) for h in h_t]

    def loss(out, h_n):
        return (u * out).sum() + sum((w * h).sum() for w, h in zip(v, h_n, strict=True))

    names = [n for n, _ in module.named_parameters()]
    theirs = torch.autograd.grad(loss(out_t, h_t), [x, *hx, *module.parameters()])
    ours = torch.autograd.grad(loss(out_o, h_o), [x, *hx, *(getattr(layer, n) for n in layer.param_names)])
    for a, b in zip(ours[: 1 + len(hx)], theirs[: 1 + len(hx)], strict=True):  # the input and hx
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)
    by_name = dict(zip(layer.param_names, ours[1 + len(hx) :], strict=True))
    _compare_grads(module, layer, by_name, dict(zip(names, theirs[1 + len(hx) :], strict=True)), H)


GRID = list(itertools.product(TORCH, (1, 2, 3), (False, True), (False, True), (False, True), (False, True)))
#: every kind, depth, direction, layout, bias and packing at least once, without running the whole product
FAST = {
    ("lstm", 1, False, False, True, False),
    ("gru", 1, False, True, True, False),
    ("lstm", 2, True, True, False, False),
    ("gru", 3, True, False, True, False),
    ("lstm", 3, True, False, True, True),
    ("gru", 2, True, True, False, True),
    ("lstm", 2, False, True, True, True),
    ("gru", 1, True, False, False, True),
}


@pytest.mark.parametrize(
    "kind, num_layers, bidirectional, batch_first, bias, packed",
    [
        pytest.param(
            *case,
            marks=() if case in FAST else (pytest.mark.slow,),
            id="-".join(map(str, case)),
        )
        for case in GRID
    ],
)
def test_every_configuration_equals_torch(kind, num_layers, bidirectional, batch_first, bias, packed):
    _parity(kind, num_layers, bidirectional, batch_first, bias, packed)


# -- converters ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", TORCH)
def test_converters_round_trip(kind):
    """Weights exactly both ways; torch's two added biases come back as one (their sum in bias_ih, exact), and a
    layer's parameters come back from torch exactly."""
    torch.manual_seed(3)
    module = TORCH[kind](3, 4, num_layers=2, bidirectional=True, batch_first=True, dropout=0.25, dtype=F64)
    module.eval()
    layer = from_torch(module)
    assert (layer.num_layers, layer.bidirectional, layer.batch_first, layer.dropout, layer.bias) == (
        2,
        True,
        True,
        0.25,
        True,
    )
    assert not layer.training and layer.dtype == F64 and layer.cell.name == {"lstm": "lstm", "gru": "gru_torch"}[kind]
    back = to_torch(layer)
    assert type(back) is type(module) and not back.training
    assert (back.num_layers, back.bidirectional, back.batch_first, back.dropout) == (2, True, True, 0.25)
    sd, sd2 = module.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys()
    H = 4
    for name in sd:
        if name.startswith("weight"):
            assert torch.equal(sd2[name], sd[name]), name
        elif name.startswith("bias_ih"):
            other = name.replace("bias_ih", "bias_hh")
            total, total2 = sd[name] + sd[other], sd2[name] + sd2[other]
            if kind == "gru":  # n's two biases stay apart
                assert torch.equal(sd2[name][2 * H :], sd[name][2 * H :]) and torch.equal(
                    sd2[other][2 * H :], sd[other][2 * H :]
                )
                total, total2 = total[: 2 * H], total2[: 2 * H]
            assert torch.equal(total2, total), name
    again = from_torch(back)
    for name in layer.param_names:
        assert torch.equal(getattr(again, name), getattr(layer, name)), name
    assert to_torch(again).state_dict().keys() == sd.keys()
    x = torch.randn(2, 5, 3, dtype=F64)
    np.testing.assert_allclose(back(x)[0].detach(), module(x)[0].detach(), rtol=1e-12, atol=1e-13)


def test_converters_keep_dtype_device_and_refuse_what_they_cannot_convert():
    torch.manual_seed(4)
    layer = from_torch(torch.nn.GRU(2, 3, bias=False))
    assert layer.dtype == torch.float32 and layer.device.type == "cpu" and not layer.bias and layer.training
    assert not any(n.startswith("b_") for n in layer.param_names)
    assert to_torch(layer).bias is False and to_torch(layer).weight_ih_l0.dtype == torch.float32
    with pytest.raises(ValueError, match=r"proj_size=2 projects its hidden state"):
        from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(TypeError, match=r"from_torch takes an nn.LSTM or an nn.GRU, got RNN"):
        from_torch(torch.nn.RNN(3, 4))
    with pytest.raises(ValueError, match=r"to_torch converts layers of the lstm cell .* this layer runs 'peephole'"):
        to_torch(RecurrentLayer("peephole", 3, 4))
    with pytest.raises(ValueError, match=r"this layer runs 'gru'"):  # the paper's GRU is not torch's
        to_torch(RecurrentLayer("gru", 3, 4))


# -- the layer's own parts ---------------------------------------------------------------------------------
def test_parameter_names_layers_and_directions():
    layer = RecurrentLayer("lstm", 3, 4, num_layers=2, bidirectional=True, dtype=F64, seed=5)
    names = layer.param_names
    assert names[:8] == ("W_f", "b_f", "W_u", "b_u", "W_c", "b_c", "W_o", "b_o")  # layer 0 forward: the cell's own
    assert names[8:10] == ("W_f_reverse", "b_f_reverse") and names[16:18] == ("W_f_l1", "b_f_l1")
    assert names[-2:] == ("W_o_l1_reverse", "b_o_l1_reverse") and len(names) == 32
    assert [n for n, _ in layer.named_parameters()] == list(names)  # torch's order: layer by layer, forward first
    assert layer.W_f.shape == (4, 4 + 3) and layer.W_f_l1.shape == (4, 4 + 2 * 4)  # layer 1 reads both directions
    assert (suffix(0, False), suffix(0, True), suffix(2, False), suffix(2, True)) == (
        "",
        "_reverse",
        "_l2",
        "_l2_reverse",
    )
    one = RecurrentLayer("lstm", 3, 4, dtype=F64, seed=5)  # layer 0 forward starts as a one-layer layer of that seed
    assert all(torch.equal(getattr(one, n), getattr(layer, n)) for n in one.param_names)
    assert not torch.equal(layer.W_f, layer.W_f_reverse) and not torch.equal(layer.W_f_reverse, layer.W_f_l1_reverse)
    text = repr(layer)
    assert "num_layers=2" in text and "bidirectional=True" in text and "dropout" not in text


def test_bias_false_drops_the_linear_biases_and_keeps_unit_parameters():
    layer = RecurrentLayer("peephole", 3, 4, bias=False, dtype=F64)
    assert set(layer.param_names) == {"W_f", "W_u", "W_c", "W_o", "p_f", "p_u", "p_o"} and "bias=False" in repr(layer)
    assert without_biases(layer.cell) == layer.cell and layer.cell.name == "peephole"
    out, (h, c) = layer(torch.randn(5, 2, 3, dtype=F64))
    assert out.shape == (5, 2, 4) and h.shape == c.shape == (1, 2, 4)


def test_unbatched_input_is_one_sequence():
    layer = RecurrentLayer("lstm", 3, 4, num_layers=2, bidirectional=True, dtype=F64)
    x = torch.randn(5, 3, dtype=F64)
    hx = tuple(torch.randn(4, 4, dtype=F64) for _ in range(2))
    out, (h, c) = layer(x, hx)
    ref, (h1, c1) = layer(x[:, None], tuple(s[:, None] for s in hx))
    assert out.shape == (5, 8) and h.shape == c.shape == (4, 4)
    assert torch.equal(out, ref[:, 0]) and torch.equal(h, h1[:, 0]) and torch.equal(c, c1[:, 0])


def test_a_stacked_layer_pickles():
    layer = RecurrentLayer("gru_torch", 3, 4, num_layers=2, bidirectional=True, dropout=0.5, dtype=F64).eval()
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    x = torch.randn(5, 2, 3, dtype=F64)
    for other in (copy.deepcopy(layer), torch.load(buf, weights_only=False)):
        assert other.num_layers == 2 and other.bidirectional and other.dropout == 0.5
        assert torch.equal(other(x)[0], layer(x)[0]) and torch.equal(other(x)[1], layer(x)[1])


# -- dropout ------------------------------------------------------------------------------------------------
def test_dropout_sits_between_layers_in_training_only():
    torch.manual_seed(6)
    p = 0.5
    layer = RecurrentLayer("lstm", 3, 4, num_layers=2, dropout=p, dtype=F64, seed=1)
    plain = RecurrentLayer("lstm", 3, 4, num_layers=2, dtype=F64)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(6, 3, 3, dtype=F64)
    layer.eval()
    assert torch.equal(layer(x)[0], plain(x)[0])  # eval: no effect
    layer.train()
    torch.manual_seed(7)
    out, (h, c) = layer(x)
    assert not torch.allclose(out, plain(x)[0])
    assert (out != 0).all()  # the last layer's output is not dropped
    # what it computed: layer 0, torch's dropout with the same generator state, layer 1
    first, second = RecurrentLayer("lstm", 3, 4, dtype=F64), RecurrentLayer("lstm", 4, 4, dtype=F64)
    first.load_params({n: getattr(layer, n) for n in first.param_names})
    second.load_params({n: getattr(layer, n + "_l1") for n in second.param_names})
    torch.manual_seed(7)
    mid, (h0, c0) = first(x)
    ref, (h1, c1) = second(torch.nn.functional.dropout(mid, p, training=True))
    np.testing.assert_allclose(out.detach(), ref.detach(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(h.detach(), torch.cat([h0, h1]).detach(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(c.detach(), torch.cat([c0, c1]).detach(), rtol=1e-13, atol=1e-14)


def test_dropout_with_one_layer_does_nothing_and_says_so():
    with pytest.warns(UserWarning, match="with num_layers=1 it does nothing"):
        layer = RecurrentLayer("gru_torch", 3, 4, dropout=0.9, dtype=F64)
    plain = RecurrentLayer("gru_torch", 3, 4, dtype=F64)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(4, 2, 3, dtype=F64)
    assert layer.training and torch.equal(layer(x)[0], plain(x)[0])


# -- lengths, packed sequences -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", TORCH)
def test_padded_with_lengths_equals_packed(kind):
    """``lengths=`` over a padded tensor computes what a PackedSequence does: zeros after each length, the state
    at each sequence's own last step, the reverse direction starting there."""
    torch.manual_seed(8)
    layer = from_torch(TORCH[kind](3, 4, num_layers=2, bidirectional=True, dtype=F64))
    x = torch.randn(6, 4, 3, dtype=F64)
    lengths = torch.tensor([3, 6, 1, 4])
    out, h_n = layer(x, lengths=lengths)
    packed, h_p = layer(pack_padded_sequence(x, lengths, enforce_sorted=False))
    ref, _ = pad_packed_sequence(packed)
    np.testing.assert_allclose(out.detach(), ref.detach(), rtol=1e-13, atol=1e-14)
    for a, b in zip(_tuple(h_n), _tuple(h_p), strict=True):
        np.testing.assert_allclose(a.detach(), b.detach(), rtol=1e-13, atol=1e-14)
    assert (out[3:, 0] == 0).all() and (out[1:, 2] == 0).all()
    alone, h_alone = layer(x[:3, :1])  # a sequence alone, run only its own steps
    np.testing.assert_allclose(out[:3, :1].detach(), alone.detach(), rtol=1e-12, atol=1e-13)
    for a, b in zip(_tuple(h_n), _tuple(h_alone), strict=True):
        np.testing.assert_allclose(a[:, :1].detach(), b.detach(), rtol=1e-12, atol=1e-13)


def _tiny_cell():
    cell = CellBuilder("tiny_stack", inputs=("x",), states=("a",), output="a")
    a_prev, x = cell.prev("a"), cell.input("x")
    f = cell.stage("Gamma_f", sigmoid(cell.linear("sum_f", [a_prev, x], weight="W_f", bias="b_f")))
    h = cell.stage("h_tilde", sp.tanh(cell.linear("sum_h", [a_prev, x], weight="W_h", bias="b_h")))
    cell.stage("a", (1 - f) * a_prev + f * h)
    return cell.build()


@pytest.mark.parametrize(
    "cell, packed",
    [
        ("peephole", False),
        ("peephole", True),
        (_tiny_cell(), True),
        (_tiny_cell(), False),
    ],
    ids=["peephole", "peephole-packed", "builder-packed", "builder"],
)
def test_gradcheck_a_stacked_bidirectional_user_cell(cell, packed, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    layer = RecurrentLayer(cell, 2, 2, num_layers=2, bidirectional=True, dtype=F64, seed=2)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(3, 3, 2, dtype=F64, generator=g).requires_grad_()
    hx = tuple(0.5 * torch.randn(4, 3, 2, dtype=F64, generator=g).requires_grad_() for _ in layer.states)
    names = layer.param_names
    params = tuple(
        (getattr(layer, n).detach() + 0.1 * torch.randn_like(getattr(layer, n))).requires_grad_() for n in names
    )
    lengths = torch.tensor([2, 3, 1])

    def f(x, *rest):
        state, ps = rest[: len(hx)], rest[len(hx) :]
        inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
        out, h_n = functional_call(
            layer, dict(zip(names, ps, strict=True)), (inp, state[0] if len(state) == 1 else state)
        )
        return (out.data if packed else out), *_tuple(h_n)

    assert torch.autograd.gradcheck(f, (x, *hx, *params), eps=1e-6, atol=1e-8, rtol=1e-6)


# -- bad input ----------------------------------------------------------------------------------------------
def test_bad_input_is_named():
    layer = RecurrentLayer("lstm", 3, 4, num_layers=2, bidirectional=True, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    zeros = torch.zeros(4, 2, 4, dtype=F64)
    with pytest.raises(ValueError, match=r"input_size = 3, got \(5, 2, 7\)"):
        layer(torch.randn(5, 2, 7, dtype=F64))
    with pytest.raises(ValueError, match=r"hx's a must have shape \(D·num_layers, B, hidden_size\) = \(4, 2, 4\), got"):
        layer(x, (torch.zeros(2, 4, dtype=F64), torch.zeros(2, 4, dtype=F64)))  # the old (B, n_a) shape
    with pytest.raises(ValueError, match=r"hx must hold 2 tensors \(a, c\), got 3"):
        layer(x, (zeros, zeros, zeros))
    with pytest.raises(TypeError, match=r"hx must be a tuple of 2 tensors \(a, c\) for cell 'lstm', got one"):
        layer(x, zeros)
    with pytest.raises(TypeError, match=r"hx's c must be torch.float64 on cpu, got torch.float32"):
        layer(x, (zeros, zeros.float()))
    with pytest.raises(TypeError, match=r"input must be a torch\.Tensor or a PackedSequence, got ndarray"):
        layer(x.numpy())
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T\] = \[1, 5\], got \[0, 5\]"):
        layer(x, lengths=[0, 5])
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T\] = \[1, 5\], got \[6, 5\]"):
        layer(x, lengths=torch.tensor([6, 5]))
    with pytest.raises(ValueError, match=r"lengths must have shape \(B,\) = \(2,\), one length per sequence"):
        layer(x, lengths=[5, 5, 5])
    with pytest.raises(TypeError, match=r"lengths must be integers, got dtype torch\.float64"):
        layer(x, lengths=[5.0, 2.0])
    with pytest.raises(ValueError, match="lengths= is for a batch; an unbatched input"):
        layer(x[:, 0], lengths=[5])
    packed = pack_padded_sequence(x, [5, 3])
    with pytest.raises(ValueError, match="lengths= is for a padded tensor; a PackedSequence carries its own"):
        layer(packed, lengths=[5, 3])
    with pytest.raises(ValueError, match=r"a packed input's data must have shape \(Σ lengths, input_size\)"):
        layer(pack_padded_sequence(torch.randn(5, 2, 2, dtype=F64), [5, 3]))


def test_bad_settings_are_named(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="num_layers must be a positive integer, got 0"):
        RecurrentLayer("lstm", 3, 4, num_layers=0)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\] \(a probability\), got 1.5"):
        RecurrentLayer("lstm", 3, 4, num_layers=2, dropout=1.5)
    with pytest.raises(TypeError, match="bidirectional must be a bool, got 'yes'"):
        RecurrentLayer("lstm", 3, 4, bidirectional="yes")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cell = CellBuilder("clash", states=("a",))
    s = cell.linear("s", [cell.prev("a"), "x"], weight="W", bias="b")
    g = cell.linear("g", [cell.prev("a"), "x"], weight="W_reverse", bias="b_g")
    cell.stage("a", sp.tanh(s) * sigmoid(g))
    clash = cell.build()
    RecurrentLayer(clash, 3, 4)  # one direction: no clash
    with pytest.raises(ValueError, match=r"take the same names in two layers or directions \(\['W_reverse'\]\)"):
        RecurrentLayer(clash, 3, 4, bidirectional=True)


STACKED_ON_JAX = r"""
import sys
import numpy as np, torch
from torch.nn.utils.rnn import pack_padded_sequence
from symbolic_lstm.torch import RecurrentLayer

packed = sys.argv[1] == "packed"
for cell in ("lstm", "gru_torch"):
    layers = [
        RecurrentLayer(cell, 3, 4, num_layers=2, bidirectional=True, dtype=torch.float64, seed=2, backend=b)
        for b in ("numpy", "jax")
    ]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 3, dtype=torch.float64, generator=g)
    got = []
    for layer in layers:
        X = x.clone().requires_grad_()
        inp = pack_padded_sequence(X, torch.tensor([2, 5, 4]), enforce_sorted=False) if packed else X
        out, h_n = layer(inp)
        out = out.data if packed else out
        h_n = (h_n,) if isinstance(h_n, torch.Tensor) else h_n
        loss = (out ** 2).sum() + sum((h ** 3).sum() for h in h_n)
        got.append([out, *h_n, *torch.autograd.grad(loss, [X, *layer.parameters()])])
    for a, b in zip(*got):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-10, atol=1e-12)
print("ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed (pip install '.[jax]')")
# XLA compiles two cells at two input sizes for seconds: the packed case (lengths through DLPack) in the fast tests
@pytest.mark.parametrize(
    "packed",
    [pytest.param(False, marks=pytest.mark.slow), True],
    ids=["padded", "packed"],
)
def test_stacked_bidirectional_layers_on_the_jax_module(packed, tmp_path):
    """backend="jax" gives the NumPy module's outputs and gradients for two layers, both directions (and packed
    sequences: the lengths reach the JAX module too).  In a child process (JAX starts threads)."""
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    arg = "packed" if packed else "padded"
    done = subprocess.run([sys.executable, "-c", STACKED_ON_JAX, arg], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@pytest.mark.parametrize("kind", TORCH)
def test_the_array_api_hand_over_takes_lengths(kind, monkeypatch):
    """What CUDA tensors run — the array-API module on the tensors themselves — here on CPU tensors: the same
    outputs and gradients as the NumPy module for two layers, both directions, packed sequences."""
    pytest.importorskip("array_api_compat")
    from symbolic_lstm.bridges.exchange import EXCHANGES
    from symbolic_lstm.codegen.backends import BACKENDS

    torch.manual_seed(10)
    layer = from_torch(TORCH[kind](3, 4, num_layers=2, bidirectional=True, dtype=F64))
    other = copy.deepcopy(layer)
    module = other.module_on(BACKENDS["array-api"])
    monkeypatch.setattr(other, "runner", lambda device: (EXCHANGES["themselves"], module))
    x = torch.randn(5, 3, 3, dtype=F64)
    got = []
    for m in (layer, other):
        X = x.clone().requires_grad_()
        out, h_n = m(pack_padded_sequence(X, torch.tensor([2, 5, 4]), enforce_sorted=False))
        loss = (out.data**2).sum() + sum((h**3).sum() for h in _tuple(h_n))
        got.append([out.data, *_tuple(h_n), *torch.autograd.grad(loss, [X, *m.parameters()])])
    for a, b in zip(*got, strict=True):
        np.testing.assert_allclose(b.detach(), a.detach(), rtol=1e-10, atol=1e-12)


def test_a_stacked_graph_backpropagated_twice_gives_the_same_gradients():
    """Each layer's saved input is the layer below's output, a view of the kernels' buffers: a second backward
    reruns every forward from them, and the buffers the kernels recycle after a backward are not those."""
    layer = RecurrentLayer("lstm", 3, 4, num_layers=3, bidirectional=True, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
    out, (_, c) = layer(pack_padded_sequence(x, [5, 3]))
    loss = out.data.square().sum() + c.sum()
    first = torch.autograd.grad(loss, [x, *layer.parameters()], retain_graph=True)
    second = torch.autograd.grad(loss, [x, *layer.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
