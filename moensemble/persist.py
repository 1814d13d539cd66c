"""Save and load fitted models without ever unpickling untrusted content.

A saved model is **one zip file** (the ``.moe`` suffix is a convention, not a requirement)
that holds only data formats that cannot carry code:

``moensemble.json``
    The manifest: file format and version, library versions, the model's class, and for
    every torch network inside the model its estimator's parameters (JSON).
``model.skops``
    The model itself through :mod:`skops.io` (a zip of JSON and ``.npy`` arrays), with every
    torch network taken out. Loading it only builds types on an explicit trusted list.
``nets/<i>.safetensors``, ``nets/<i>.history.json``
    The weights of each network as safetensors (through skorch's
    ``save_params(use_safetensors=True)``) and its training history as JSON. On load, the
    network is rebuilt from its estimator's parameters, then the weights are loaded into it.

Any estimator that skops can serialise works: the weighted and stacked ensembles, pipelines
of scikit-learn models, and mixtures of experts anywhere inside them (a stack whose base is
an :class:`~moensemble.MoEClassifier`, a pipeline ending in one).

Plain ``pickle`` / ``joblib.dump`` keep working for files you wrote yourself; use
:func:`save` / :func:`load` for files that come from elsewhere.
"""

from __future__ import annotations

import copy
import importlib
import io
import json
import os
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["save", "load", "trusted_types", "UntrustedTypesError"]

FORMAT = "moensemble-model"
#: Bumped whenever a file written by this version cannot be read by an older one.
FORMAT_VERSION = 1
MANIFEST = "moensemble.json"
MODEL = "model.skops"
FRAME_KEY = "__moensemble_pandas__"

#: scikit-learn / numpy types that skops does not trust by default and that we vetted:
#: plain data holders whose loading runs no user code.
VETTED_TYPES = (
    "sklearn.utils._bunch.Bunch",
    "sklearn.tree._tree.Tree",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.link.LogLink",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.loss.AbsoluteError",
    "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.feature_extraction.text.CountVectorizer",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.pipeline.Pipeline",
    # skops stores sparse matrices as .npz members, read without pickle.
    "scipy.sparse._csr.csr_matrix",
    "scipy.sparse._csc.csc_matrix",
    "scipy.sparse._coo.coo_matrix",
    "scipy.sparse._csr.csr_array",
    "scipy.sparse._csc.csc_array",
    "collections.OrderedDict",
    "builtins.slice",
    "numpy.dtype",
    "numpy.float32",
    "numpy.float64",
    "numpy.int64",
    "numpy.int32",
    "numpy.bool_",
)


class UntrustedTypesError(ValueError):
    """The file asks to build types that are not on the trusted list; nothing was built.

    Attributes
    ----------
    untrusted : list of str
        The fully qualified names of the refused types.
    """

    def __init__(self, message: str, untrusted: Sequence[str]) -> None:
        super().__init__(message)
        self.untrusted = list(untrusted)


# ---- save ------------------------------------------------------------------------------------


def save(model: Any, path: str | os.PathLike) -> Path:
    """Save a fitted model to one file that :func:`load` reads back without pickle.

    The file is written next to ``path`` and moved into place at the end, so a failure
    (disk full, an unsupported part) leaves an existing file at ``path`` untouched.

    Parameters
    ----------
    model : estimator
        A fitted moensemble or scikit-learn estimator (or pipeline); torch networks inside it
        (mixtures of experts) are stored as safetensors.
    path : str or path-like
        Destination file, e.g. ``"model.moe"``.

    Returns
    -------
    path : pathlib.Path
        The written file.

    Raises
    ------
    TypeError
        When a part of ``model`` cannot be stored without pickle (skops refuses it); use
        ``joblib.dump`` for such models.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> import moensemble, tempfile, os
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LogisticRegression(max_iter=500).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "clf.moe")
    >>> _ = moensemble.save(clf, path)
    >>> bool((moensemble.load(path).predict(X) == clf.predict(X)).all())
    True
    """
    import skops.io as sio

    path = Path(path)
    nets: list[Any] = []
    skeleton = _strip_nets(model, nets, {})
    try:
        model_bytes = sio.dumps(skeleton)
    except OSError:  # out of memory for the archive, not an unsupported part
        raise
    except Exception as exc:  # skops raises several types for what it cannot store
        raise TypeError(
            f"Cannot save {type(model).__name__} safely: {exc}. Models with such parts can be "
            "saved with joblib.dump (which unpickles, so load only files you trust)."
        ) from exc
    manifest = _manifest(model, nets)
    members = {MODEL: model_bytes}
    for i, owner in enumerate(nets):
        members[f"nets/{i}.safetensors"] = _net_weights(owner)
        members[f"nets/{i}.history.json"] = _history_json(owner.net_)
    members[MANIFEST] = json.dumps(manifest, indent=2, default=_json_default).encode()
    _write_zip_atomic(path, members)
    return path


def _manifest(model: Any, nets: list[Any]) -> dict:
    import sklearn

    from moensemble import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "moensemble_version": __version__,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "class": _qualname(type(model)),
        "nets": [
            {
                "estimator": _qualname(type(owner)),
                "params": owner.get_params(deep=False),
                "in_features": _net_in_features(owner),
                "weights": f"nets/{i}.safetensors",
                "history": f"nets/{i}.history.json",
            }
            for i, owner in enumerate(nets)
        ],
    }


def _strip_nets(obj: Any, nets: list[Any], memo: dict[int, Any]) -> Any:
    """Return ``obj`` with each estimator that holds a skorch net replaced by a net-less copy.

    The copies get ``_moensemble_net`` (their index in ``nets``); containers and estimators
    on the way are shallow-copied only when something below them changed, and ``memo`` keeps
    shared objects shared (``named_estimators_`` and ``estimators_`` hold the same models).
    """
    key = id(obj)
    if key in memo:
        return memo[key]
    if _is_frame(obj):
        # skops stores no pandas objects: keep the columns as numpy arrays, rebuilt on load.
        memo[key] = _frame_state(obj)
        return memo[key]
    if _holds_net(obj):
        stripped = copy.copy(obj)
        for name in ("net_", "history_"):
            stripped.__dict__.pop(name, None)
        stripped._moensemble_net = len(nets)
        nets.append(obj)
        memo[key] = stripped
        return stripped
    if isinstance(obj, list | tuple):
        items = [_strip_nets(v, nets, memo) for v in obj]
        out = obj
        if any(a is not b for a, b in zip(items, obj, strict=True)):
            # list, tuple, or a named tuple (whose constructor takes the fields one by one)
            out = type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    elif isinstance(obj, dict):
        items = {k: _strip_nets(v, nets, memo) for k, v in obj.items()}
        changed = any(items[k] is not v for k, v in obj.items())
        out = obj
        if changed:
            out = copy.copy(obj)
            out.update(items)
    elif _is_estimator_like(obj):
        state = {k: _strip_nets(v, nets, memo) for k, v in vars(obj).items()}
        changed = any(state[k] is not v for k, v in vars(obj).items())
        out = obj
        if changed:
            out = copy.copy(obj)
            out.__dict__.update(state)
    else:
        out = obj
    memo[key] = out
    return out


def _is_frame(obj: Any) -> bool:
    pd = sys.modules.get("pandas")  # no pandas object can exist unless pandas is imported
    return pd is not None and isinstance(obj, pd.DataFrame | pd.Series)


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


def _frame_from_state(state: dict) -> Any:
    import pandas as pd

    index = pd.MultiIndex.from_arrays(state["index"], names=state["index_names"]) if len(
        state["index"]
    ) > 1 else pd.Index(state["index"][0], name=state["index_names"][0])
    frame = pd.DataFrame(dict(enumerate(state["data"])), index=index)
    frame.columns = state["columns"]
    return frame.iloc[:, 0].rename(state["name"]) if state[FRAME_KEY] == "series" else frame


def _holds_net(obj: Any) -> bool:
    net = getattr(obj, "__dict__", {}).get("net_")
    return net is not None and type(net).__module__.split(".")[0] in ("skorch", "moensemble") and (
        hasattr(net, "module_")
    )


def _is_estimator_like(obj: Any) -> bool:
    from sklearn.base import BaseEstimator

    return isinstance(obj, BaseEstimator)


def _net_weights(owner: Any) -> bytes:
    """The net's module weights as safetensors bytes (skorch writes them)."""
    buffer = io.BytesIO()
    owner.net_.save_params(f_params=buffer, use_safetensors=True)
    return buffer.getvalue()


def _history_json(net: Any) -> bytes:
    return json.dumps(list(net.history), default=_json_default).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, type):
        return _qualname(value)
    if isinstance(value, tuple | set):
        return list(value)
    return repr(value)  # callbacks and other objects: for reading only, never loaded


def _write_zip_atomic(path: Path, members: dict[str, bytes]) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"Cannot save to {path}: the folder {folder} does not exist.")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w") as archive:
            # The manifest first, so a reader can check the format before anything else.
            for name in [MANIFEST, *[m for m in members if m != MANIFEST]]:
                archive.writestr(name, members[name], compress_type=zipfile.ZIP_DEFLATED)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# ---- load ------------------------------------------------------------------------------------


def load(path: str | os.PathLike, trusted: Iterable[str] | None = None) -> Any:
    """Load a model written by :func:`save`, refusing any type that is not trusted.

    Nothing in the file is unpickled: the configuration is JSON, torch weights are
    safetensors, and the rest is read by :mod:`skops.io`, which builds only the types on the
    trusted list — moensemble's estimators, the scikit-learn and numpy types that skops
    trusts, and :data:`VETTED_TYPES` — plus the names in ``trusted``.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    trusted : iterable of str, default=None
        More fully qualified type names to trust (e.g. your own estimator class), after you
        have checked them; :class:`UntrustedTypesError` lists the names a file needs.

    Returns
    -------
    model : estimator
        The fitted model; its predictions equal those of the saved model.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        ``path`` is not a moensemble model file, is damaged, or was written in a newer
        format than this version of moensemble reads.
    UntrustedTypesError
        The file needs types that are not trusted; none of them was built.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No model file at {path}.")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a moensemble model file.")
    with _open_zip(path) as archive:
        manifest = _read_manifest(archive, path)
        model_bytes = _read_member(archive, MODEL, path)
        try:
            nets = [
                (
                    _read_member(archive, entry["weights"], path),
                    _read_member(archive, entry["history"], path),
                    int(entry["in_features"]),
                )
                for entry in manifest.get("nets", [])
            ]
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ValueError) and "damaged" in str(exc):
                raise
            raise ValueError(f"{path} is damaged: bad network entry in {MANIFEST} ({exc}).") \
                from None
    model = _load_skops(model_bytes, path, trusted)
    return _restore_nets(model, nets, {})


def trusted_types(untrusted: Iterable[str]) -> list[str]:
    """The names among ``untrusted`` (from skops) that moensemble trusts.

    moensemble's own scikit-learn estimators (and the classes listed in
    :data:`VETTED_TYPES`) are trusted; functions, and classes from any other package, are not.

    Parameters
    ----------
    untrusted : iterable of str
        Names from :func:`skops.io.get_untrusted_types`.

    Returns
    -------
    names : list of str
    """
    return [name for name in untrusted if name in VETTED_TYPES or _is_own_estimator(name)]


def _is_own_estimator(name: str) -> bool:
    """Whether ``name`` is an estimator class defined in moensemble (imported to check)."""
    from sklearn.base import BaseEstimator

    module, _, attr = name.rpartition(".")
    if not module.startswith("moensemble.") or not attr.isidentifier():
        return False
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return False
    return isinstance(obj, type) and issubclass(obj, BaseEstimator) and obj.__module__ == module


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ValueError(
            f"{path} is not a moensemble model file (not a zip archive written by "
            "moensemble.save). Files written by pickle or joblib.dump are loaded with "
            "joblib.load — only if you trust their source."
        ) from None


def _read_member(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    try:
        return archive.read(name)
    except KeyError:
        raise ValueError(f"{path} is damaged: it lacks {name!r}.") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path} is damaged: cannot read {name!r} ({exc}).") from None


def _read_manifest(archive: zipfile.ZipFile, path: Path) -> dict:
    if MANIFEST not in archive.namelist():
        raise ValueError(f"{path} is not a moensemble model file (no {MANIFEST}).")
    try:
        manifest = json.loads(_read_member(archive, MANIFEST, path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is damaged: {MANIFEST} is not JSON ({exc}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a moensemble model file ({MANIFEST} has no "
                         f"format {FORMAT!r}).")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ValueError(
            f"{path} was written by moensemble {manifest.get('moensemble_version', '?')} in "
            f"file format {version!r}; this moensemble reads format {FORMAT_VERSION} only. "
            "Install the moensemble version that wrote it (or newer)."
        )
    return manifest


def _load_skops(data: bytes, path: Path, extra: Iterable[str] | None) -> Any:
    import skops.io as sio

    if isinstance(extra, str | bytes) or extra is True:
        raise TypeError("`trusted` must be a list of type names (str) you have checked.")
    try:
        needed = sio.get_untrusted_types(data=data)
    except Exception as exc:  # not a skops archive: a replaced or corrupted member
        raise ValueError(f"{path} is damaged: {MODEL} is not a skops file ({exc}).") from None
    allowed = set(trusted_types(needed)) | set(extra or ())
    refused = sorted(set(needed) - allowed)
    if refused:
        raise UntrustedTypesError(
            f"Refusing to load {path}: it needs types that are not trusted: {refused}. Nothing "
            "was loaded. If you know where the file comes from and have checked these types, "
            "pass them as load(path, trusted=[...]).",
            refused,
        )
    try:
        return sio.loads(data, trusted=sorted(allowed))
    except Exception as exc:  # skops found something its audit refuses
        raise ValueError(f"{path} is damaged or unsafe: {type(exc).__name__}: {exc}") from None


# ---- torch networks --------------------------------------------------------------------------


def _restore_nets(obj: Any, nets: list[tuple[bytes, bytes, int]], memo: dict[int, Any]) -> Any:
    """Undo :func:`_strip_nets`: rebuild marked networks and pandas objects; return ``obj``.

    Containers and estimators are updated in place (tuples are rebuilt).
    """
    key = id(obj)
    if key in memo:
        return memo[key]
    memo[key] = obj
    if isinstance(obj, dict) and FRAME_KEY in obj:
        memo[key] = _frame_from_state(obj)
        return memo[key]
    index = getattr(obj, "__dict__", {}).get("_moensemble_net")
    if index is not None:
        del obj.__dict__["_moensemble_net"]
        if not isinstance(index, int) or not 0 <= index < len(nets):
            raise ValueError(f"Model file is damaged: network {index!r} is not stored.")
        _rebuild_net(obj, *nets[index])
    if isinstance(obj, list):
        obj[:] = [_restore_nets(v, nets, memo) for v in obj]
    elif isinstance(obj, tuple):
        items = [_restore_nets(v, nets, memo) for v in obj]
        if any(a is not b for a, b in zip(items, obj, strict=True)):
            memo[key] = type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    elif isinstance(obj, dict):
        for k, v in list(obj.items()):
            obj[k] = _restore_nets(v, nets, memo)
    elif _is_estimator_like(obj):
        for k, v in list(vars(obj).items()):
            setattr(obj, k, _restore_nets(v, nets, memo))
    return memo[key]


def _net_in_features(owner: Any) -> int:
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


def _rebuild_net(estimator: Any, weights: bytes, history: bytes, in_features: int) -> None:
    """Build ``estimator.net_`` from its parameters, then load the saved weights into it."""
    from skorch.history import History

    if hasattr(estimator, "_build_module"):  # MoEClassifier / MoERegressor
        net = _moe_net(estimator, in_features)
    elif hasattr(estimator, "_check_router_params"):  # GatedEnsembleClassifier / Regressor
        hidden, device = _check_for_this_machine(estimator, estimator._check_router_params)
        net = estimator._make_net(in_features, hidden, None, device)
    else:
        raise ValueError(f"Cannot rebuild the network of {type(estimator).__name__}.")
    net.initialize()
    try:
        net.load_params(f_params=io.BytesIO(weights), use_safetensors=True)
    except Exception as exc:  # safetensors header error, shape mismatch, missing keys
        raise ValueError(f"Model file is damaged: cannot load the network weights ({exc}).") \
            from None
    net.history = History(json.loads(history))
    estimator.net_ = net
    estimator.history_ = net.history


def _moe_net(estimator: Any, in_features: int) -> Any:
    import torch
    from sklearn.base import is_classifier

    from moensemble.moe.net import MoENetClassifier, MoENetRegressor

    hidden, device = _check_for_this_machine(estimator, estimator._check_params)
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
            stacklevel=5,
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
            stacklevel=5,
        )
        estimator.set_params(precision="float32")
        return check()
