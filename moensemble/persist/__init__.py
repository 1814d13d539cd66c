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

Every model built from scikit-learn's and moensemble's estimators works: the weighted,
stacked and gated ensembles, pipelines, and mixtures of experts anywhere inside them (a stack
whose base is an :class:`~moensemble.MoEClassifier`, a gated ensemble over one). Parts that
skops cannot store, or that ``load`` should not have to trust (networks, training histories,
pandas objects, ``joblib.Memory``, neighbors trees), are stored as plain data and rebuilt:
see :mod:`moensemble.persist._parts`.

``load`` bounds what a crafted file can make it do: every member's uncompressed size is
capped (``max_size``), array and tensor headers are checked against the bytes stored after
them before anything is allocated, and networks are built on torch's ``meta`` device and
compared with the stored weights before they are built for real.

Plain ``pickle`` / ``joblib.dump`` keep working for files you wrote yourself; use
:func:`save` / :func:`load` for files that come from elsewhere.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moensemble.persist import _parts as parts

__all__ = ["save", "load", "trusted_types", "UntrustedTypesError"]

FORMAT = "moensemble-model"
#: Bumped whenever a file written by this version cannot be read by an older one.
FORMAT_VERSION = 1
MANIFEST = "moensemble.json"
MODEL = "model.skops"
#: Default cap on the bytes ``load`` decompresses (each of the file and ``model.skops``).
MAX_SIZE = 2**31

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
    # moensemble's own text-view helper (missing texts as empty strings), the function of
    # the FunctionTransformer in `moensemble.text.tfidf_view(column=...)`.
    "moensemble.text._fill_texts",
    # The shared term counts of `moensemble.text.CountedTfidfVectorizer`: stored as its name
    # (a str) only; a loaded one starts an empty store.
    "moensemble.text.TermCounts",
    # CV splitters (the ensembles' ``cv``): integers, flags, seeds and index arrays.
    *(
        f"sklearn.model_selection._split.{name}"
        for name in (
            "KFold", "StratifiedKFold", "GroupKFold", "StratifiedGroupKFold", "RepeatedKFold",
            "RepeatedStratifiedKFold", "ShuffleSplit", "StratifiedShuffleSplit",
            "GroupShuffleSplit", "TimeSeriesSplit", "LeaveOneOut", "LeavePOut",
            "LeaveOneGroupOut", "LeavePGroupsOut", "PredefinedSplit", "_CVIterableWrapper",
        )
    ),
    # The `boost` extra's models, which the AutoML's portfolio trains: their state is the
    # library's own model text/bytes, parsed by the library (no pickle, no code).
    "lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier", "lightgbm.sklearn.LGBMRegressor",
    "xgboost.core.Booster", "xgboost.sklearn.XGBClassifier", "xgboost.sklearn.XGBRegressor",
    "catboost.core.CatBoostClassifier", "catboost.core.CatBoostRegressor",
    # skops stores sparse matrices as .npz members, read without pickle.
    "scipy.sparse._csr.csr_matrix",
    "scipy.sparse._csc.csc_matrix",
    "scipy.sparse._coo.coo_matrix",
    "scipy.sparse._csr.csr_array",
    "scipy.sparse._csc.csc_array",
    # HistGradientBoosting's preprocessor of categorical columns is a
    # FunctionTransformer(partial(check_array, ...)): skops loads a partial's function as a
    # node of its own, checked against this list like any other type.
    "functools.partial",
    "sklearn.utils.validation.check_array",
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


def save(model: Any, path: str | os.PathLike, trusted: Iterable[str] | None = None) -> Path:
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
    trusted : iterable of str, default=None
        Type names outside moensemble's trusted list (your own estimator class, a function in
        a parameter) that you will also pass to ``load(path, trusted=...)``.

    Returns
    -------
    path : pathlib.Path
        The written file.

    Raises
    ------
    TypeError
        When a part of ``model`` cannot be stored without pickle (skops refuses it), or when
        ``load`` would refuse the file: the message names the types (add them to ``trusted``
        once you have checked them, or use ``joblib.dump``).

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
    trusted = _check_trusted_arg(trusted)
    if hasattr(model, "study_"):  # SearchCV, AutoClassifier, AutoRegressor
        raise TypeError(
            f"Cannot save a fitted {type(model).__name__}: it holds its Optuna study and "
            "search space. Save the model it found: save(search.best_estimator_, path)."
        )
    nets: list[Any] = []
    skeleton = parts.strip(model, nets, {})
    try:
        model_bytes = sio.dumps(skeleton)
    except OSError:  # out of memory for the archive, not an unsupported part
        raise
    except Exception as exc:  # skops raises several types for what it cannot store
        raise TypeError(
            f"Cannot save {type(model).__name__} safely: {exc}. Models with such parts can be "
            "saved with joblib.dump (which unpickles, so load only files you trust)."
        ) from exc
    needed = sio.get_untrusted_types(data=model_bytes)
    refused = sorted(set(needed) - set(trusted_types(needed)) - set(trusted))
    if refused:
        raise TypeError(
            f"Cannot save {type(model).__name__}: load() would refuse the file, which needs "
            f"types outside moensemble's trusted list: {refused}. If you have checked them, "
            "pass them to save(..., trusted=[...]) and to load(..., trusted=[...]); or use "
            "joblib.dump (which unpickles, so load only files you trust)."
        )
    manifest = _manifest(model, nets)
    members = {MODEL: model_bytes}
    for i, owner in enumerate(nets):
        members[f"nets/{i}.safetensors"] = parts.net_weights(owner)
        members[f"nets/{i}.history.json"] = parts.history_json(owner.net_)
    members[MANIFEST] = json.dumps(manifest, indent=2, default=parts.json_default).encode()
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
                "in_features": parts.net_in_features(owner),
                "weights": f"nets/{i}.safetensors",
                "history": f"nets/{i}.history.json",
            }
            for i, owner in enumerate(nets)
        ],
    }

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


def load(
    path: str | os.PathLike, trusted: Iterable[str] | None = None, *, max_size: int = MAX_SIZE
) -> Any:
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
    max_size : int, default=2**31
        The most bytes ``load`` decompresses from the file (and, separately, from its
        ``model.skops`` member); a larger file is refused as damaged. Raise it for a model
        larger than 2 GiB uncompressed.

    Returns
    -------
    model : estimator
        The fitted model; its predictions equal those of the saved model.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        ``path`` is not a moensemble model file, is damaged (the message says
        ``"... is damaged: ..."``: a member or array larger than what is stored, weights that
        do not match the model, a history that is not JSON, ...), or was written in a newer
        format than this version of moensemble reads.
    UntrustedTypesError
        The file needs types that are not trusted; none of them was built.
    """
    path = Path(path)
    trusted = _check_trusted_arg(trusted)
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise TypeError(f"`max_size` must be a positive int (bytes); got {max_size!r}.")
    if not path.exists():
        raise FileNotFoundError(f"No model file at {path}.")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a moensemble model file.")
    budget = [max_size]  # bytes left to decompress from the file
    with _open_zip(path) as archive:
        manifest = _read_manifest(archive, path, budget)
        model_bytes = _read_member(archive, MODEL, path, budget)
        entries = manifest.get("nets", [])
        if not isinstance(entries, list):
            raise ValueError(f"{path} is damaged: bad network list in {MANIFEST}.")
        nets = []
        for entry in entries:
            try:
                weights, history, width = entry["weights"], entry["history"], entry["in_features"]
                if not (isinstance(width, int) and not isinstance(width, bool) and width >= 1):
                    raise ValueError(f"in_features={width!r}")
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path} is damaged: bad network entry in {MANIFEST} ({exc}).") \
                    from None
            nets.append((_read_member(archive, weights, path, budget),
                         _read_member(archive, history, path, budget), width))
    _check_skops_archive(model_bytes, path, max_size)
    model = _load_skops(model_bytes, path, trusted)
    try:
        return parts.restore(model, nets, {})
    except parts.Damaged as exc:
        raise ValueError(f"{path} is damaged: {exc}.") from None


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


def _read_member(archive: zipfile.ZipFile, name: Any, path: Path, budget: list[int]) -> bytes:
    """Read one member, decompressing at most ``budget[0]`` bytes (then lowered by it)."""
    try:
        info = archive.getinfo(name)
    except (KeyError, TypeError):
        raise ValueError(f"{path} is damaged: it lacks {name!r}.") from None
    if info.file_size > budget[0]:
        raise ValueError(f"{path} is damaged: {name!r} holds {info.file_size} bytes "
                         "uncompressed, more than load(max_size=...) allows.")
    try:
        with archive.open(info) as member:
            data = member.read(budget[0] + 1)  # the header's size can lie: read no further
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{path} is damaged: cannot read {name!r} ({exc}).") from None
    if len(data) > budget[0]:
        raise ValueError(f"{path} is damaged: {name!r} inflates to more than "
                         "load(max_size=...) allows.")
    budget[0] -= len(data)
    return data


def _check_skops_archive(data: bytes, path: Path, max_size: int) -> None:
    """Cap ``model.skops``'s members and check every array header against its bytes.

    numpy allocates an array from its header's shape before reading the data, so a header
    claiming more than the member holds would allocate that much: refuse it first.
    """
    budget = [max_size]
    try:
        inner = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return  # not a skops file: _load_skops says so
    with inner:
        for info in inner.infolist():
            content = _read_member(inner, info.filename, path, budget)
            if info.filename.endswith(".npy"):
                _check_npy(content, info.filename, path)
            elif info.filename.endswith(".npz"):  # sparse matrices: a zip of .npy members
                try:
                    nested = zipfile.ZipFile(io.BytesIO(content))
                except zipfile.BadZipFile:
                    raise ValueError(f"{path} is damaged: {info.filename!r} is not an .npz "
                                     "archive.") from None
                with nested:
                    for name in nested.namelist():
                        _check_npy(_read_member(nested, name, path, budget), name, path)


def _check_npy(content: bytes, name: str, path: Path) -> None:
    from numpy.lib import format as npy

    handle = io.BytesIO(content)
    try:
        version = npy.read_magic(handle)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _, dtype = read(handle)
    except (ValueError, TypeError, SyntaxError, OverflowError) as exc:
        raise ValueError(f"{path} is damaged: {name!r} is not a .npy array ({exc}).") from None
    stored = len(content) - handle.tell()
    if dtype.hasobject or math.prod(shape) * dtype.itemsize != stored:
        raise ValueError(f"{path} is damaged: the array {name!r} claims shape {shape} of "
                         f"{dtype}, which its {stored} stored bytes do not hold.")


def _read_manifest(archive: zipfile.ZipFile, path: Path, budget: list[int]) -> dict:
    if MANIFEST not in archive.namelist():
        raise ValueError(f"{path} is not a moensemble model file (no {MANIFEST}).")
    try:
        manifest = json.loads(_read_member(archive, MANIFEST, path, budget))
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


def _check_trusted_arg(trusted: Any) -> list[str]:
    """``trusted`` as a list of names; a TypeError for anything else (``True``, a str)."""
    if trusted is None:
        return []
    names = None
    if not isinstance(trusted, str | bytes) and isinstance(trusted, Iterable):
        names = list(trusted)
    if names is None or not all(isinstance(name, str) for name in names):
        raise TypeError("`trusted` must be a list of type names (str) you have checked; "
                        f"got {trusted!r}.")
    return names


def _load_skops(data: bytes, path: Path, extra: Iterable[str] | None) -> Any:
    import skops.io as sio

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


