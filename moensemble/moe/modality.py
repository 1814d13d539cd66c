"""Experts per modality: each expert reads only the columns of its block of an encoded table.

The router of the MoE estimators always reads every column; with ``expert_blocks`` each
expert is wrapped in a :class:`BlockExpert` that selects its block's columns (text TF-IDF,
numeric, categorical, ... as :func:`moensemble.features.blocks_by_kind` returns them)
before the usual expert runs, so a text expert never sees the numbers and the reverse.

* :func:`set_expert_blocks`, :func:`resolve_expert_blocks` — the estimator's
  ``expert_blocks`` / ``experts_per_block`` checked against ``X``: the columns of each
  block and the block of each expert.
* :class:`BlockExpert` — the column-selecting wrapper; a CSR batch stays CSR (the kept
  non-zeros are re-indexed, nothing is densified).
* :func:`build_block_experts` — one wrapped expert per entry of ``expert_block_of_``.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np
import torch
from torch import Tensor, nn

from .experts import MLPExpert
from .sparse import _csr, _parts, densify, is_sparse
from .variants import build_experts

#: The report's name for the experts that no block restricts (they read every column).
GENERALIST = "generalist"


def _block_columns(name: str, spec: object, n_features: int) -> np.ndarray:
    """The sorted column indices of one ``expert_blocks`` entry, checked."""
    where = f"`expert_blocks[{name!r}]`"
    if isinstance(spec, slice):
        cols = np.arange(n_features)[spec]
    else:
        if isinstance(spec, (str, bytes)) or not hasattr(spec, "__len__"):
            raise TypeError(
                f"{where} must be a slice, a range or a sequence of int column indices; got "
                f"{type(spec).__name__}."
            )
        arr = np.asarray(spec)
        if arr.dtype == bool:
            if arr.shape != (n_features,):
                raise ValueError(
                    f"{where} is a boolean mask of shape {arr.shape}; X has {n_features} "
                    "columns."
                )
            cols = np.flatnonzero(arr)
        elif arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{where} must hold int column indices; got dtype {arr.dtype}.")
        else:
            cols = arr.astype(np.int64).ravel()
            bad = cols[(cols < 0) | (cols >= n_features)]
            if bad.size:
                raise ValueError(
                    f"{where} holds column {int(bad[0])}, out of range for X with {n_features} "
                    f"columns (valid indices: 0 to {n_features - 1})."
                )
    cols = np.unique(cols)
    if cols.size == 0:
        raise ValueError(f"{where} selects no column of X ({n_features} columns).")
    return cols


def set_expert_blocks(estimator, n_features: int) -> None:
    """Set an MoE estimator's ``expert_blocks_`` and ``expert_block_of_`` in ``fit``."""
    if estimator.expert_blocks is None:
        if estimator.experts_per_block is not None:
            raise ValueError("`experts_per_block` needs `expert_blocks`; got None.")
        return
    plain = (("init", "random"), ("encoder", None), ("n_layers", 1),
             ("num_embedding", None))
    for name, value in plain:
        if getattr(estimator, name) != value:
            raise ValueError(
                "`expert_blocks` restricts the experts of a single MoE layer to columns of "
                f"the raw features; it needs `{name}`={value!r}, got "
                f"{getattr(estimator, name)!r}."
            )
    estimator.expert_blocks_, estimator.expert_block_of_ = resolve_expert_blocks(
        estimator.expert_blocks, estimator.experts_per_block, n_features, estimator.n_experts_
    )


def resolve_expert_blocks(
    expert_blocks: dict,
    experts_per_block: int | dict | None,
    n_features: int,
    n_experts: int,
) -> tuple[dict[str, np.ndarray], list[str | None]]:
    """Columns of each block, and the block of each expert (``None``: every column).

    ``experts_per_block=None`` deals the experts out round-robin (expert ``i`` to block
    ``i % n_blocks``); an int gives every block that many and a dict ``{block: count}`` the
    given counts, in block order; experts left over read every column.
    """
    if not isinstance(expert_blocks, dict) or not expert_blocks:
        raise ValueError(
            "`expert_blocks` must be None or a non-empty dict {block name: columns}."
        )
    blocks: dict[str, np.ndarray] = {}
    for name, spec in expert_blocks.items():
        if not isinstance(name, str) or name == GENERALIST:
            raise ValueError(
                f"`expert_blocks` keys must be block names (str other than {GENERALIST!r}); "
                f"got {name!r}."
            )
        cols = _block_columns(name, spec, n_features)
        for other, seen in blocks.items():
            shared = np.intersect1d(cols, seen)
            if shared.size:
                raise ValueError(
                    f"`expert_blocks`: blocks {other!r} and {name!r} share columns "
                    f"{shared[:5].tolist()}; each column belongs to at most one block."
                )
        blocks[name] = cols
    names = list(blocks)
    counts = _expert_counts(experts_per_block, names, n_experts)
    if counts is None:
        if n_experts < len(names):
            raise ValueError(
                f"`n_experts`={n_experts} is less than the {len(names)} blocks of "
                "`expert_blocks`: every block needs an expert (give more experts, or "
                "`experts_per_block` with a count per block)."
            )
        block_of = [names[i % len(names)] for i in range(n_experts)]
    else:
        block_of = [name for name in names for _ in range(counts[name])]
        block_of += [None] * (n_experts - len(block_of))
    return blocks, block_of


def _expert_counts(spec: int | dict | None, names: list[str], n_experts: int):
    if spec is None:
        return None
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(names), key=str)
        if unknown:
            raise ValueError(
                f"`experts_per_block` names blocks {unknown} that are not in "
                f"`expert_blocks` ({names})."
            )
        counts = {name: spec.get(name, 0) for name in names}
    else:
        counts = dict.fromkeys(names, spec)
    for name, count in counts.items():
        if not isinstance(count, Integral) or isinstance(count, bool) or count < 0:
            raise ValueError(
                f"`experts_per_block[{name!r}]` must be an int >= 0; got {count!r}."
            )
    total = sum(counts.values())
    if total > n_experts:
        raise ValueError(
            f"`experts_per_block` asks for {total} experts in all ({counts}), more than "
            f"the model's {n_experts} (`n_experts` or len(`experts`))."
        )
    if total == 0:
        raise ValueError("`experts_per_block` gives no expert to any block.")
    return counts


class BlockExpert(nn.Module):
    """An expert that reads only ``columns`` of its input: ``expert(x[:, columns])``.

    Parameters
    ----------
    expert : nn.Module
        Maps ``(rows, len(columns)) -> (rows, out)``.
    columns : ndarray of int
        Sorted, distinct column indices of the block.
    n_features : int
        Width of the full input.
    block : str
        The block's name (the routing report groups experts by it).
    """

    accepts_sparse = True  # a CSR batch is cut to the block's columns and stays CSR

    def __init__(self, expert: nn.Module, columns: np.ndarray, n_features: int, block: str):
        super().__init__()
        self.expert = expert
        self.block = block
        self.n_features = int(n_features)
        cols = torch.as_tensor(np.asarray(columns, dtype=np.int64))
        remap = torch.full((self.n_features,), -1, dtype=torch.int64)
        remap[cols] = torch.arange(len(cols))
        # Rebuilt from the estimator's fitted attributes, so not part of the saved weights.
        self.register_buffer("columns", cols, persistent=False)
        self.register_buffer("remap", remap, persistent=False)

    def forward(self, x: Tensor) -> Tensor:  # (rows, n_features) -> (rows, out)
        if not is_sparse(x):
            return self.expert(x.index_select(1, self.columns))
        crow, col, val = _parts(x)
        new_col = self.remap[col]
        keep = new_col >= 0
        row_of = torch.repeat_interleave(torch.arange(x.shape[0], device=x.device), crow.diff())
        per_row = torch.bincount(row_of[keep], minlength=x.shape[0])
        new_crow = torch.zeros(x.shape[0] + 1, dtype=crow.dtype, device=crow.device)
        torch.cumsum(per_row, 0, out=new_crow[1:])
        xb = _csr(new_crow, new_col[keep], val[keep], (x.shape[0], len(self.columns)))
        return self.expert(xb if getattr(self.expert, "accepts_sparse", False) else densify(xb))


def build_block_experts(
    block_of: Sequence[str | None],
    blocks: dict[str, np.ndarray],
    n_features: int,
    out_features: int,
    *,
    specs: Sequence | None,
    hidden: tuple[int, ...],
    activation: str,
    dropout: float,
) -> nn.ModuleList:
    """Expert ``i`` built for its block's width (``specs[i]``, else an MLP of ``hidden``)."""
    experts = []
    for i, block in enumerate(block_of):
        width = n_features if block is None else len(blocks[block])
        if specs is not None:
            expert = build_experts(
                [specs[i]], width, out_features, activation=activation, dropout=dropout
            )[0]
        else:
            expert = MLPExpert(width, hidden, out_features, activation=activation,
                               dropout=dropout)
        experts.append(
            expert if block is None else BlockExpert(expert, blocks[block], n_features, block)
        )
    return nn.ModuleList(experts)


def expert_blocks_of(experts: Sequence[nn.Module]) -> list[str | None]:
    """The block name of every expert of a built module (``None``: every column)."""
    return [getattr(e, "block", None) for e in experts]
