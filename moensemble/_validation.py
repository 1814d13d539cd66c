"""Input checks shared by every estimator.

Parameter *values* are checked declaratively with scikit-learn's
``_parameter_constraints`` in each estimator; this module holds the checks that
need more than a type/range: lists of named estimators, devices, precisions; and
:class:`IntInterval`, the integer constraint that refuses booleans.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from numbers import Integral

import numpy as np
from sklearn.base import is_classifier, is_regressor
from sklearn.utils._param_validation import Interval


class IntInterval(Interval):
    """``Interval(Integral, left, right, closed=...)`` that refuses ``True``/``False``.

    Python's bool is an int, so scikit-learn's integer intervals take ``n_iter=True`` as 1;
    a count given as a bool is a mistake, and this constraint says so by the parameter's name
    (``InvalidParameterError``, a ValueError and a TypeError).
    """

    def __init__(self, left: int | None, right: int | None = None, *,
                 closed: str = "left") -> None:
        super().__init__(Integral, left, right, closed=closed)

    def is_satisfied_by(self, val) -> bool:
        return not isinstance(val, bool | np.bool_) and super().is_satisfied_by(val)

    def __str__(self) -> str:
        return f"{super().__str__()}, not a bool"


def check_estimators(estimators, *, param: str = "estimators", kind: str | None = None):
    """Validate a list of ``(name, estimator)`` pairs; return it as a list.

    ``kind`` is ``"classifier"`` or ``"regressor"`` to require that every member
    is of that kind.
    """
    if not isinstance(estimators, Sequence) or isinstance(estimators, str) or not estimators:
        raise ValueError(
            f"`{param}` must be a non-empty list of (name, estimator) tuples; got {estimators!r}."
        )
    pairs = []
    for item in estimators:
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(
                f"Each element of `{param}` must be a (name, estimator) tuple with a str name; "
                f"got {item!r}."
            )
        name, est = item
        if "__" in name or not name:
            raise ValueError(
                f"Estimator names in `{param}` must be non-empty and contain no '__'; got {name!r}."
            )
        if not hasattr(est, "fit"):
            raise TypeError(f"`{param}` member {name!r} has no `fit` method: {est!r}.")
        if kind == "classifier" and not is_classifier(est):
            raise TypeError(f"`{param}` member {name!r} must be a classifier; got {est!r}.")
        if kind == "regressor" and not is_regressor(est):
            raise TypeError(f"`{param}` member {name!r} must be a regressor; got {est!r}.")
        pairs.append((name, est))
    names = [n for n, _ in pairs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Names in `{param}` must be unique; duplicated: {duplicates}.")
    return pairs


def resolve_device(device: str) -> str:
    """Map ``'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps'`` to a torch device string.

    ``'auto'`` falls back to CPU with a warning when no GPU is present; asking for
    ``'cuda'`` without CUDA is an error that says so.
    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        warnings.warn(
            "device='auto': no CUDA device found, using the CPU.", UserWarning, stacklevel=3
        )
        return "cpu"
    if device == "cpu":
        return "cpu"
    if isinstance(device, str) and device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but torch finds no CUDA device on this machine; "
                "use device='cpu' or device='auto'."
            )
        return device
    if device == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError(
                "device='mps' but no Apple MPS device is available; use 'cpu' or 'auto'."
            )
        return device
    raise ValueError(f"`device` must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'; got {device!r}.")


def check_precision(precision: str, device: str):
    """Return the torch dtype for ``precision`` after checking that ``device`` supports it.

    ``precision`` is ``'float32' | 'bfloat16' | 'float16'``; the two low precisions mean
    autocast on ``device``. An unsupported pair is a ValueError naming ``precision``.
    """
    import torch

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"`precision` must be one of {sorted(dtypes)}; got {precision!r}.")
    dtype = dtypes[precision]
    if dtype == torch.float32:
        return dtype
    device_type = torch.device(device).type
    if device_type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision='bfloat16' is not supported by this GPU ({device}).")
    # Autocast with a dtype the device cannot run only *warns* and turns itself off:
    # make that an error so the user does not silently train in float32.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with torch.autocast(device_type, dtype=dtype):
                a = torch.ones(2, 2, device=device)
                if (a @ a).dtype != dtype:
                    raise RuntimeError(f"autocast produced {(a @ a).dtype}")
    except (RuntimeError, UserWarning) as exc:
        raise ValueError(
            f"precision={precision!r} (autocast) is not supported on device {device!r}: {exc}. "
            "Use precision='float32' or 'bfloat16'."
        ) from exc
    return dtype
