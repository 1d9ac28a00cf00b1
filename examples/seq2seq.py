"""A small sequence-to-sequence model with derived cells: reverse strings of digits of random lengths.

    python examples/seq2seq.py                 # trains both models, prints their accuracy
    python examples/seq2seq.py --steps 300 --seed 1

* **Encoder**: a bidirectional ``RecurrentLayer`` of a user cell — a minimal gated unit (MGU, Zhou et al. 2016:
  one forget gate, ``a<t> = (1 − f)·a<t-1> + f·tanh(W_h [f·a<t-1>, x<t>] + b_h)``) — over a packed batch of
  embedded digit strings (``pack_padded_sequence(…, enforce_sorted=False)``).  Its two final states (forward and
  reverse) make the context vector.
* **Decoder**: a user cell with two per-step inputs: the previous token's embedding x<t> and the context z<t>
  (the same vector at every step) — a GRU whose update gate reads [a<t-1>, x<t>, z<t>] and whose candidate reads
  the context alone beside the reset state.  Trained with teacher forcing; decoded greedily, one step at a time,
  the state carried in ``hx``.
* **Side by side**: the same model with ``nn.LSTM(bidirectional=True)`` as the encoder.

Every recurrent step forward and backward runs the kernels derived from the cells by SymPy (proved for every T
and n by ``symbolic-lstm prove``); torch's autograd sees one node per layer and direction.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import sympy as sp
import torch
from symbolic_lstm.torch import RecurrentLayer
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from symbolic_lstm import Cell, CellBuilder, sigmoid

DIGITS, BOS = 10, 10  # tokens 0..9; the decoder's first input is BOS


def mgu() -> Cell:
    """The minimal gated unit: one gate, one state."""
    b = CellBuilder("mgu", inputs=("x",), states=("a",), output="a")
    a, x = b.prev("a"), b.input("x")
    f = b.stage("f", sigmoid(b.linear("sum_f", [a, x], weight="W_f", bias="b_f")))
    r = b.stage("r", f * a)
    h = b.stage("h", sp.tanh(b.linear("sum_h", [r, x], weight="W_h", bias="b_h")))
    b.stage("a", (1 - f) * a + f * h)
    return b.build()


def context_gru() -> Cell:
    """A GRU reading the previous token x<t> and a context z<t>: the update gate reads all three, the candidate
    the reset state and the context (not the token)."""
    b = CellBuilder("context_gru", inputs=("x", "z"), states=("a",), output="a")
    a, x, z = b.prev("a"), b.input("x"), b.input("z")
    u = b.stage("u", sigmoid(b.linear("sum_u", [a, x, z], weight="W_u", bias="b_u")))
    r = b.stage("r", sigmoid(b.linear("sum_r", [a, x], weight="W_r", bias="b_r")))
    ra = b.stage("ra", r * a)
    h = b.stage("h", sp.tanh(b.linear("sum_h", [ra, z], weight="W_h", bias="b_h")))
    b.stage("a", (1 - u) * a + u * h)
    return b.build()


def batch(rng: np.random.Generator, size: int, longest: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` digit strings of lengths 1..longest, padded (T, B) with 0, and their lengths (B,)."""
    lengths = rng.integers(1, longest + 1, size=size)
    tokens = np.zeros((longest, size), dtype=np.int64)
    for b, n in enumerate(lengths):
        tokens[:n, b] = rng.integers(0, DIGITS, size=n)
    return torch.from_numpy(tokens), torch.from_numpy(lengths)


def reversed_within(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each column's first lengths[b] tokens in reverse order (the target), padding left as it is."""
    out = tokens.clone()
    for b, n in enumerate(lengths.tolist()):
        out[:n, b] = tokens[:n, b].flip(0)
    return out


@dataclass
class Sizes:
    embed: int = 16
    hidden: int = 48
    context: int = 32


class Seq2Seq(nn.Module):
    """Encoder (``"mgu"`` — a bidirectional RecurrentLayer of the MGU — or ``"nn.LSTM"``), context, decoder
    (a RecurrentLayer of the two-input GRU), read-out."""

    def __init__(self, encoder: str, sizes: Sizes, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        E, H, C = sizes.embed, sizes.hidden, sizes.context
        self.embed = nn.Embedding(DIGITS + 1, E, dtype=dtype)
        if encoder == "nn.LSTM":
            self.encoder = nn.LSTM(E, H, bidirectional=True, dtype=dtype)
        else:
            self.encoder = RecurrentLayer(mgu(), E, H, bidirectional=True, dtype=dtype)
        self.to_context = nn.Linear(2 * H, C, dtype=dtype)
        self.to_start = nn.Linear(C, H, dtype=dtype)  # the decoder's initial state, from the context
        self.decoder = RecurrentLayer(context_gru(), E, H, input_sizes={"z": C}, dtype=dtype)
        self.readout = nn.Linear(H, DIGITS, dtype=dtype)

    def context(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, C): the encoder's final forward and reverse states of each string, projected."""
        packed = pack_padded_sequence(self.embed(tokens), lengths, enforce_sorted=False)
        _, h_n = self.encoder(packed)
        h = h_n[0] if isinstance(h_n, tuple) else h_n  # nn.LSTM: (h_n, c_n); the MGU: its one state
        return torch.tanh(self.to_context(torch.cat([h[0], h[1]], dim=1)))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Logits (T, B, 10) of each target token, the decoder fed the previous target token (teacher forcing)."""
        z = self.context(tokens, lengths)
        previous = torch.cat([torch.full_like(target[:1], BOS), target[:-1]])
        T = target.shape[0]
        start = torch.tanh(self.to_start(z))[None]  # (1, B, H): hx of a one-layer decoder
        out, _ = self.decoder(self.embed(previous), start, lengths=lengths, z=z.expand(T, -1, -1).contiguous())
        return self.readout(out)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Greedy decoding, one step at a time (the state carried in ``hx``): (T, B) predicted tokens."""
        z = self.context(tokens, lengths)[None]
        token, hx, out = torch.full_like(tokens[:1], BOS), torch.tanh(self.to_start(z)), []
        for _ in range(tokens.shape[0]):
            a, hx = self.decoder(self.embed(token), hx, z=z)
            token = self.readout(a).argmax(-1)
            out.append(token[0])
        return torch.stack(out)


def accuracy(model: Seq2Seq, tokens: torch.Tensor, lengths: torch.Tensor) -> float:
    """The fraction of tokens greedy decoding gets right, within each string's length."""
    predicted, target = model.decode(tokens, lengths), reversed_within(tokens, lengths)
    within = torch.arange(tokens.shape[0])[:, None] < lengths[None, :]
    return float((predicted == target)[within].double().mean())


def train(
    encoder: str, steps: int = 800, batch_size: int = 64, longest: int = 6, seed: int = 0, sizes: Sizes | None = None
) -> tuple[Seq2Seq, float]:
    """Train one model with Adam on fresh random strings; returns it and its accuracy on 512 held-out strings."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Seq2Seq(encoder, sizes or Sizes())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)  # settles the last steps' updates
    for _ in range(steps):
        tokens, lengths = batch(rng, batch_size, longest)
        target = reversed_within(tokens, lengths)
        logits = model(tokens, lengths, target)
        within = torch.arange(tokens.shape[0])[:, None] < lengths[None, :]
        loss = nn.functional.cross_entropy(logits[within], target[within])
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    held_out = batch(np.random.default_rng(seed + 1), 512, longest)
    return model, accuracy(model, *held_out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for encoder in ("mgu", "nn.LSTM"):
        _, acc = train(encoder, steps=args.steps, seed=args.seed)
        print(f"encoder {encoder:<8} held-out token accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
