"""What a :class:`~symbolic_lstm.bridges.torch.RecurrentLayer` is given, as ``nn.LSTM`` takes it, and how sequences
of different lengths run through it.

* :func:`as_padded` / :func:`unpack`: the input (a tensor, batch-first or not, batched or one sequence, or a
  ``PackedSequence``) as the kernels' (T, B, n_x), with each sequence's length where they differ;
* :func:`further_inputs`: a cell's per-step inputs after the first (a decoder's context z), given as the input is;
* :func:`checked_lengths`, :func:`initial_states`: ``lengths=`` and ``hx`` checked (ValueError / TypeError naming
  what is wrong and what was expected);
* :func:`reverse_within` and :func:`last_steps`: the reverse direction reads each sequence reversed within its own
  length, and a state's final value is the one at each sequence's own last step.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

State = Union[torch.Tensor, tuple[torch.Tensor, ...]]  # noqa: UP007 (typing's form: `|` fails on the docs build's mocked torch)

__all__ = [
    "State", "as_padded", "checked_lengths", "further_inputs", "initial_states", "last_steps", "reverse_within",
    "unpack",
]  # fmt: skip


def as_padded(x: object, input_size: int, batch_first: bool) -> tuple[torch.Tensor, bool]:
    """The input as (T, B, n_x) (a view), and whether it was one unbatched sequence (T, n_x)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor or a PackedSequence, got {type(x).__name__}")
    order = "(B, T, input_size)" if batch_first else "(T, B, input_size)"
    if x.dim() not in (2, 3) or x.shape[-1] != input_size:
        raise ValueError(
            f"input must have shape {order} (or (T, input_size) unbatched) with input_size = {input_size}, "
            f"got {tuple(x.shape)}"
        )
    if x.dim() == 2:
        return x[:, None], True
    return (x.transpose(0, 1) if batch_first else x), False


def unpack(packed: PackedSequence, input_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A packed input as the padded (T, B, n_x) in the order its sequences were packed in, and their lengths (B,)
    (a CPU int64 tensor)."""
    data = packed.data
    if data.dim() != 2 or data.shape[-1] != input_size:
        raise ValueError(
            f"a packed input's data must have shape (Σ lengths, input_size) with input_size = {input_size}, "
            f"got {tuple(data.shape)}"
        )
    return pad_packed_sequence(packed)


def further_inputs(
    given: dict[str, object],
    sizes: dict[str, int],
    x: torch.Tensor,
    packed: PackedSequence | None,
    batch_first: bool,
    unbatched: bool,
) -> list[torch.Tensor]:
    """The cell's inputs after the first, in the order of ``sizes`` ({name: width}), each as the kernels take it:
    (T, B, width), contiguous, with x's (T, B, n_x) steps, batch, dtype and device.  Each is given as the input is:
    a ``PackedSequence`` of the same batch sizes and order for a packed input, else a tensor (T, B, width) —
    (B, T, width) with ``batch_first``, (T, width) for one unbatched sequence."""
    missing, extra = [n for n in sizes if n not in given], [n for n in given if n not in sizes]
    if missing or extra:
        want = ", ".join(f"{n}= (…, {w})" for n, w in sizes.items()) or "none"
        raise TypeError(f"the cell's further per-step inputs are {want}; missing {missing}, unexpected {extra}")
    T, B = x.shape[0], x.shape[1]
    out = []
    for name, width in sizes.items():
        v = given[name]
        if packed is not None:
            if not isinstance(v, PackedSequence):
                raise TypeError(f"{name} must be a PackedSequence like the input, got {type(v).__name__}")
            same_order = (v.sorted_indices is None) == (packed.sorted_indices is None) and (
                v.sorted_indices is None or torch.equal(v.sorted_indices, packed.sorted_indices)
            )
            if not torch.equal(v.batch_sizes, packed.batch_sizes) or not same_order:
                raise ValueError(f"{name} must be packed from sequences of the input's lengths, in the input's order")
            if v.data.dim() != 2 or v.data.shape[-1] != width:
                got = tuple(v.data.shape)
                raise ValueError(f"{name}'s packed data must have shape (Σ lengths, {width}), got {got}")
            t = pad_packed_sequence(v, total_length=T)[0]
        else:
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor like the input, got {type(v).__name__}")
            order = "(T, width)" if unbatched else "(B, T, width)" if batch_first else "(T, B, width)"
            want = (T, width) if unbatched else (B, T, width) if batch_first else (T, B, width)
            if tuple(v.shape) != want:
                raise ValueError(f"{name} must have shape {order} = {want} like the input, got {tuple(v.shape)}")
            t = v[:, None] if unbatched else v.transpose(0, 1) if batch_first else v
        if t.dtype != x.dtype or t.device != x.device:
            raise TypeError(f"{name} must be {x.dtype} on {x.device} like the input, got {t.dtype} on {t.device}")
        out.append(t if t.is_contiguous() else t.contiguous())
    return out


def checked_lengths(lengths: object, T: int, B: int, unbatched: bool) -> torch.Tensor:
    """``lengths`` as a CPU int64 tensor (B,), each 1 ≤ L_b ≤ T."""
    if unbatched:
        raise ValueError("lengths= is for a batch; an unbatched input (T, input_size) is one sequence of T steps")
    if isinstance(lengths, torch.Tensor):
        t = lengths.detach().cpu()
    else:
        try:
            t = torch.as_tensor(np.asarray(lengths))
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"lengths must be (B,) integers, got {type(lengths).__name__}") from None
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"lengths must be integers, got dtype {t.dtype}")
    if tuple(t.shape) != (B,):
        raise ValueError(f"lengths must have shape (B,) = ({B},), one length per sequence, got {tuple(t.shape)}")
    t = t.to(torch.int64)
    if B and (int(t.min()) < 1 or int(t.max()) > T):
        raise ValueError(f"lengths must lie in [1, T] = [1, {T}], got {t.tolist()}")
    return t


def initial_states(
    hx: State | None,
    states: tuple[str, ...],
    cell: str,
    shape: tuple[int, int, int],
    dtype: torch.dtype,
    device: torch.device,
    unbatched: bool,
) -> list[torch.Tensor]:
    """Each state's initial values, ``shape`` = (D·num_layers, B, n_a), from ``hx`` (zeros for None): a tensor for
    a cell of one state, a tuple in the cell's state order for more; (D·num_layers, n_a) each when unbatched."""
    if hx is None:
        return [torch.zeros(shape, dtype=dtype, device=device) for _ in states]
    n, names = len(states), ", ".join(states)
    if isinstance(hx, torch.Tensor):
        if n != 1:
            raise TypeError(f"hx must be a tuple of {n} tensors ({names}) for cell {cell!r}, got one")
        hx = (hx,)
    if not isinstance(hx, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in hx):
        raise TypeError(f"hx must be a tensor or a tuple of tensors ({names}), got {type(hx).__name__}")
    if len(hx) != n:
        raise ValueError(f"hx must hold {n} tensor{'s' * (n > 1)} ({names}), got {len(hx)}")
    want = (shape[0], shape[2]) if unbatched else shape
    text = "(D·num_layers, hidden_size)" if unbatched else "(D·num_layers, B, hidden_size)"
    out = []
    for s, t in zip(states, hx, strict=True):
        if tuple(t.shape) != want:
            raise ValueError(f"hx's {s} must have shape {text} = {want}, got {tuple(t.shape)}")
        if t.dtype != dtype or t.device != device:
            raise TypeError(f"hx's {s} must be {dtype} on {device}, got {t.dtype} on {t.device}")
        out.append(t[:, None] if unbatched else t)
    return out


def reverse_within(seq: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence of ``seq`` (T, B, ·) reversed within its own length: step t ↦ L_b − 1 − t for t < L_b, the
    padding after it left in place (its own inverse).  All of them over T when ``lengths`` is None."""
    if lengths is None:
        return seq.flip(0)
    t = torch.arange(seq.shape[0], device=seq.device)[:, None]
    L = lengths.to(seq.device)[None, :]
    index = torch.where(t < L, L - 1 - t, t)  # (T, B)
    return seq.gather(0, index[:, :, None].expand(seq.shape))


def last_steps(seq: torch.Tensor, lengths: torch.Tensor | None, initial: torch.Tensor) -> torch.Tensor:
    """The value at each sequence's last step (B, n_a): step L_b − 1 of column b (T − 1 for every column when
    ``lengths`` is None; the initial value for an empty sequence)."""
    if seq.shape[0] == 0:
        return initial
    if lengths is None:
        return seq[-1]
    columns = torch.arange(seq.shape[1], device=seq.device)
    return seq[lengths.to(seq.device) - 1, columns]
