"""The parts of a model that :mod:`moensemble.persist` stores outside skops, and back.

Before skops sees a model, :func:`strip` replaces what skops cannot store, or what ``load``
should not have to trust, by plain data:

- an estimator's skorch network (``net_``, ``history_``) -> its index in the list of networks,
  stored as safetensors + JSON and rebuilt by :func:`rebuild_net`;
- a skorch ``History`` elsewhere (``dense_history_``) -> its rows as a JSON string;
- a pandas DataFrame / Series -> its columns as numpy arrays;
- a ``joblib.Memory`` -> its location (a str, which every ``memory`` parameter accepts), so
  loading a file creates no cache folder;
- the k-d / ball tree of a fitted neighbors model -> a marker; the tree is rebuilt from the
  stored training rows, so ``load`` never trusts the tree's Cython state.

:func:`restore` undoes it. Shared objects stay shared (``named_estimators_`` and
``estimators_`` hold the same models).
"""

from __future__ import annotations

import copy
import io
import json
import math
import struct
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

FRAME_KEY = "__moensemble_pandas__"
HISTORY_KEY = "__moensemble_history__"
TREE_KEY = "__moensemble_neighbors_tree__"
NET_KEY = "_moensemble_net"
# Parameters that size a network: none may exceed the number of weights the file stores, so a
# crafted file cannot make even the shape check build a huge module.
_SIZE_PARAMS = ("n_experts", "n_experts_", "top_k", "expert_hidden", "router_hidden")


class Damaged(ValueError):
    """A part of the file is inconsistent; ``load`` adds the path to the message."""


# ---- save side -------------------------------------------------------------------------------


def strip(obj: Any, nets: list[Any], memo: dict[int, Any]) -> Any:
    """Return ``obj`` with the parts listed in the module docstring replaced by plain data.

    Containers and estimators on the way are shallow-copied only when something below them
    changed; the model itself is never modified. Net owners are appended to ``nets``.
    """
    key = id(obj)
    if key in memo:
        return memo[key]
    special = _strip_special(obj)
    if special is not obj:
        memo[key] = special
        return special
    out = obj
    if holds_net(obj):
        out = copy.copy(obj)
        for name in ("net_", "history_"):
            out.__dict__.pop(name, None)
        out.__dict__[NET_KEY] = len(nets)
        nets.append(obj)
    memo[key] = out  # before recursing: a reference cycle ends here
    if isinstance(obj, list | tuple):
        items = [strip(v, nets, memo) for v in obj]
        if any(a is not b for a, b in zip(items, obj, strict=True)):
            # list, tuple, or a named tuple (whose constructor takes the fields one by one)
            out = type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    elif isinstance(obj, dict):
        items = {k: strip(v, nets, memo) for k, v in obj.items()}
        if any(items[k] is not v for k, v in obj.items()):
            out = copy.copy(obj)
            out.update(items)
    elif is_estimator_like(obj):
        state = {k: strip(v, nets, memo) for k, v in vars(out).items()}
        if _is_neighbors_with_tree(obj):
            state["_tree"] = {TREE_KEY: obj._fit_method}
        if any(state[k] is not v for k, v in vars(out).items()):
            out = copy.copy(out) if out is obj else out
            out.__dict__.update(state)
    memo[key] = out
    return out


def _strip_special(obj: Any) -> Any:
    if is_frame(obj):
        # skops stores no pandas objects: keep the columns as numpy arrays, rebuilt on load.
        return _frame_state(obj)
    if _is_history(obj):
        return {HISTORY_KEY: json.dumps(list(obj), default=json_default)}
    joblib = sys.modules.get("joblib")
    if joblib is not None and isinstance(obj, joblib.Memory):
        return None if obj.location is None else str(obj.location)
    return obj


def holds_net(obj: Any) -> bool:
    net = getattr(obj, "__dict__", {}).get("net_")
    return net is not None and type(net).__module__.split(".")[0] in ("skorch", "moensemble") and (
        hasattr(net, "module_")
    )


def is_estimator_like(obj: Any) -> bool:
    from sklearn.base import BaseEstimator

    return isinstance(obj, BaseEstimator)


def is_frame(obj: Any) -> bool:
    pd = sys.modules.get("pandas")  # no pandas object can exist unless pandas is imported
    return pd is not None and isinstance(obj, pd.DataFrame | pd.Series)


def _is_history(obj: Any) -> bool:
    return type(obj).__module__ == "skorch.history" and isinstance(obj, list)


def _is_neighbors_with_tree(obj: Any) -> bool:
    if "sklearn.neighbors" not in sys.modules:
        return False
    from sklearn.neighbors import BallTree, KDTree

    return isinstance(obj.__dict__.get("_tree"), KDTree | BallTree)


def _frame_state(frame: Any) -> dict:
    """A DataFrame or Series as a plain dict of lists and numpy arrays."""
    import pandas as pd

    is_series = isinstance(frame, pd.Series)
    table = frame.to_frame() if is_series else frame
    return {
        FRAME_KEY: "series" if is_series else "frame",
        "name": frame.name if is_series else None,
        "columns": list(table.columns),
        "index": [np.asarray(table.index.get_level_values(i)) for i in range(table.index.nlevels)],
        "index_names": list(table.index.names),
        "data": [np.asarray(table.iloc[:, j]) for j in range(table.shape[1])],
    }


def net_weights(owner: Any) -> bytes:
    """The net's module weights as safetensors bytes (skorch writes them)."""
    buffer = io.BytesIO()
    owner.net_.save_params(f_params=buffer, use_safetensors=True)
    return buffer.getvalue()


def history_json(net: Any) -> bytes:
    return json.dumps(list(net.history), default=json_default).encode()


def json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, tuple | set):
        return list(value)
    return repr(value)  # callbacks and other objects: for reading only, never loaded


def net_in_features(owner: Any) -> int:
    """Input width of ``owner.net_``'s module: the first linear layer of the gated router's
    trunk (or of the router itself), the estimator's features for a mixture of experts."""
    import torch

    module = owner.net_.module_
    for part in (getattr(module, "trunk", None), getattr(module, "router", None)):
        linear = next((m for m in part.modules() if isinstance(m, torch.nn.Linear)), None) if (
            part is not None and hasattr(owner, "_check_router_params")
        ) else None
        if linear is not None:
            return int(linear.in_features)
    return int(owner.n_features_in_)


# ---- load side -------------------------------------------------------------------------------


def restore(obj: Any, nets: list[tuple[bytes, bytes, int]], memo: dict[int, Any]) -> Any:
    """Undo :func:`strip` in place (tuples are rebuilt); return the restored ``obj``."""
    key = id(obj)
    if key in memo:
        return memo[key]
    memo[key] = obj
    if isinstance(obj, dict) and FRAME_KEY in obj:
        memo[key] = _frame_from_state(obj)
        return memo[key]
    if isinstance(obj, dict) and HISTORY_KEY in obj:
        memo[key] = history_from_json(obj[HISTORY_KEY])
        return memo[key]
    if isinstance(obj, list):
        obj[:] = [restore(v, nets, memo) for v in obj]
    elif isinstance(obj, tuple):
        items = [restore(v, nets, memo) for v in obj]
        if any(a is not b for a, b in zip(items, obj, strict=True)):
            memo[key] = type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    elif isinstance(obj, dict):
        for k, v in list(obj.items()):
            obj[k] = restore(v, nets, memo)
    elif is_estimator_like(obj):
        index = obj.__dict__.pop(NET_KEY, None)
        for k, v in list(vars(obj).items()):
            setattr(obj, k, restore(v, nets, memo))
        tree = obj.__dict__.get("_tree")
        if isinstance(tree, dict) and TREE_KEY in tree:
            _rebuild_tree(obj, tree[TREE_KEY])
        if index is not None:
            if not isinstance(index, int) or isinstance(index, bool) or not (
                0 <= index < len(nets)
            ):
                raise Damaged(f"network {index!r} is not stored")
            rebuild_net(obj, *nets[index])
    return memo[key]


def _frame_from_state(state: dict) -> Any:
    import pandas as pd

    index = pd.MultiIndex.from_arrays(state["index"], names=state["index_names"]) if len(
        state["index"]
    ) > 1 else pd.Index(state["index"][0], name=state["index_names"][0])
    frame = pd.DataFrame(dict(enumerate(state["data"])), index=index)
    frame.columns = state["columns"]
    return frame.iloc[:, 0].rename(state["name"]) if state[FRAME_KEY] == "series" else frame


def history_from_json(data: str | bytes) -> Any:
    """A skorch ``History`` from its JSON rows; :class:`Damaged` unless a list of dicts."""
    from skorch.history import History

    try:
        rows = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise Damaged(f"a training history is not JSON ({exc})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise Damaged("a training history is not a list of epochs")
    return History(rows)


def _rebuild_tree(estimator: Any, method: Any) -> None:
    """Rebuild a neighbors model's tree from its training rows, as its ``fit`` does."""
    from sklearn.neighbors import BallTree, KDTree

    trees = {"kd_tree": KDTree, "ball_tree": BallTree}
    if method not in trees or estimator.__dict__.get("_fit_method") != method:
        raise Damaged(f"unknown neighbors tree {method!r}")
    try:
        estimator._tree = trees[method](
            np.asarray(estimator._fit_X), estimator.leaf_size,
            metric=estimator.effective_metric_, **estimator.effective_metric_params_,
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise Damaged(f"cannot rebuild the {method} of {type(estimator).__name__} ({exc})") \
            from None


def rebuild_net(estimator: Any, weights: bytes, history: bytes, in_features: int) -> None:
    """Build ``estimator.net_`` from its parameters, then load the saved weights into it.

    The module is first built on torch's ``meta`` device (nothing allocated) and its tensor
    shapes are compared with the stored ones: a file whose parameters ask for more than it
    stores is damaged, and nothing big is ever allocated for it.
    """
    import torch

    if hasattr(estimator, "_build_module"):  # MoEClassifier / MoERegressor
        hidden, device = _check_for_this_machine(estimator, estimator._check_params)

        def build():
            return _moe_net(estimator, in_features, hidden, device)
    elif hasattr(estimator, "_check_router_params"):  # GatedEnsembleClassifier / Regressor
        hidden, device = _check_for_this_machine(estimator, estimator._check_router_params)

        def build():
            return estimator._make_net(in_features, hidden, None, device)
    else:
        raise Damaged(f"cannot rebuild the network of {type(estimator).__name__}")
    stored = safetensors_shapes(weights)
    _check_sizes(estimator, in_features, sum(math.prod(s) for s in stored.values()))
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build().module.state_dict().items()}
    except (ValueError, TypeError, RuntimeError) as exc:
        raise Damaged(f"cannot build the network of {type(estimator).__name__} ({exc})") \
            from None
    if expected != stored:
        wrong = sorted(set(expected) ^ set(stored)) or sorted(
            k for k in expected if expected[k] != stored[k]
        )
        raise Damaged(f"the stored network weights do not match the model's parameters "
                      f"(tensors {wrong[:3]})")
    net = build()
    net.initialize()
    try:
        net.load_params(f_params=io.BytesIO(weights), use_safetensors=True)
    except Exception as exc:  # safetensors header error, shape mismatch, missing keys
        raise Damaged(f"cannot load the network weights ({exc})") from None
    net.history = history_from_json(history)
    estimator.net_ = net
    estimator.history_ = net.history


def safetensors_shapes(data: bytes) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header, checked against the bytes that follow it."""
    sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
             "U8": 1, "BOOL": 1}
    if len(data) < 8:
        raise Damaged("cannot load the network weights (no safetensors header)")
    (length,) = struct.unpack("<Q", data[:8])
    try:
        if length > len(data) - 8:
            raise ValueError("header longer than the file")
        header = json.loads(data[8:8 + length])
        shapes, end = {}, 0
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            shape = tuple(int(d) for d in entry["shape"])
            start, stop = (int(o) for o in entry["data_offsets"])
            if min(shape, default=0) < 0 or stop - start != math.prod(shape) * sizes[
                entry["dtype"]
            ] or start < 0:
                raise ValueError(f"tensor {name!r}: shape {shape} does not fit its bytes")
            shapes[name], end = shape, max(end, stop)
        if end > len(data) - 8 - length:
            raise ValueError("tensors past the end of the file")
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
        raise Damaged(f"cannot load the network weights ({exc})") from None
    return shapes


def _check_sizes(estimator: Any, in_features: int, n_stored: int) -> None:
    values = [in_features]
    for name in _SIZE_PARAMS:
        value = estimator.__dict__.get(name)
        values += list(value) if isinstance(value, list | tuple) else [value]
    if any(isinstance(v, int) and v > max(n_stored, 1) for v in values):
        raise Damaged(f"the network sizes of {type(estimator).__name__} exceed the "
                      f"{n_stored} stored weights")


def _moe_net(estimator: Any, in_features: int, hidden: tuple[int, ...], device: str) -> Any:
    import torch
    from sklearn.base import is_classifier

    from moensemble.moe.net import MoENetClassifier, MoENetRegressor

    if is_classifier(estimator):
        net_cls, criterion = MoENetClassifier, torch.nn.CrossEntropyLoss
        out = len(estimator.classes_)
    else:
        net_cls, criterion, out = MoENetRegressor, torch.nn.MSELoss, len(estimator._y_mean)
    module = estimator._build_module(in_features, out, hidden)
    return estimator._make_net(net_cls, criterion, module, None, device)


def _check_for_this_machine(estimator: Any, check: Callable[[], Any]) -> Any:
    """Check the parameters; a model fitted on a GPU loads on the CPU when there is none."""
    try:
        return check()
    except ValueError as exc:
        if str(estimator.device) == "cpu":
            raise
        warnings.warn(
            f"The model was fitted with device={estimator.device!r}, which this machine cannot "
            f"use ({exc}); it is loaded on the CPU (device='cpu').",
            UserWarning,
            stacklevel=6,
        )
        estimator.set_params(device="cpu")
    try:
        return check()
    except ValueError:
        if getattr(estimator, "precision", "float32") == "float32":
            raise
        warnings.warn(
            f"precision={estimator.precision!r} is not supported on the CPU here; the model "
            "predicts in float32.",
            UserWarning,
            stacklevel=6,
        )
        estimator.set_params(precision="float32")
        return check()
