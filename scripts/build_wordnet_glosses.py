"""Build the bundled WordNet glosses data set shipped in ``moensemble/datasets/data``.

Usage::

    apt-get download wordnet-base && dpkg -x wordnet-base_*.deb /tmp/wordnet
    python scripts/build_wordnet_glosses.py /tmp/wordnet/usr/share/wordnet

Reads ``data.noun``, ``data.verb``, ``data.adj`` and ``data.adv`` (WordNet 3.0 database
files) and writes one row per synset: its gloss, its lexicographer file (the label, such as
``noun.animal``), its synset id (part of speech + byte offset, e.g. ``n02084071``) and its
lemmas. The output is a
tab-separated file compressed with xz, which ``pandas.read_csv`` reads natively.
"""

from __future__ import annotations

import argparse
import csv
import lzma
from pathlib import Path

import pandas as pd

# The 45 lexicographer files of WordNet 3.0 (``lexnames``), indexed by ``lex_filenum``.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)  # fmt: skip

DATA_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
COLUMNS = ["text", "label", "synset", "lemmas"]
DEFAULT_OUT = (
    Path(__file__).resolve().parent.parent / "moensemble" / "datasets" / "data"
    / "wordnet_glosses.tsv.xz"
)  # fmt: skip


def parse_line(line: str) -> dict[str, str] | None:
    """Parse one synset line of a WordNet ``data.*`` file; ``None`` for licence lines."""
    # The licence header lines start with two spaces; synset lines with an 8-digit offset.
    if line.startswith(" "):
        return None
    fields, _, gloss = line.partition(" | ")
    tokens = fields.split()
    offset, lex_filenum, ss_type = tokens[0], int(tokens[1]), tokens[2]
    n_words = int(tokens[3], 16)  # w_cnt is two hexadecimal digits
    words = tokens[4 : 4 + 2 * n_words : 2]
    # Adjective lemmas may carry a syntactic marker such as "(p)" or "(ip)".
    lemmas = [w.split("(")[0].replace("_", " ") for w in words]
    pos = "a" if ss_type == "s" else ss_type  # satellites are adjectives
    return {
        "text": " ".join(gloss.split()),
        "label": LEXNAMES[lex_filenum],
        "synset": f"{pos}{offset}",
        "lemmas": "|".join(dict.fromkeys(lemmas)),  # unique, in order
    }


def read_wordnet(dict_dir: Path) -> pd.DataFrame:
    """Read every synset of the four WordNet data files into one DataFrame."""
    rows = []
    for name in DATA_FILES:
        path = dict_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: pass the WordNet 'dict' folder.")
        with path.open(encoding="utf-8") as handle:
            rows.extend(row for line in handle if (row := parse_line(line)) is not None)
    return pd.DataFrame(rows, columns=COLUMNS)


def write_tsv_xz(frame: pd.DataFrame, out: Path) -> None:
    """Write ``frame`` as xz-compressed TSV; glosses contain commas and quotes, never tabs."""
    if frame["text"].str.contains("\t").any():
        raise ValueError("A gloss contains a tab; the TSV format would break.")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Byte-for-byte reproducible: fixed preset, no timestamps in the xz container.
    with lzma.open(out, "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME) as handle:
        frame.to_csv(handle, sep="\t", index=False, quoting=csv.QUOTE_NONE, lineterminator="\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dict_dir", type=Path, help="folder holding data.noun, data.verb, ...")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="file to write")
    args = parser.parse_args(argv)
    frame = read_wordnet(args.dict_dir)
    write_tsv_xz(frame, args.out)
    print(
        f"wrote {args.out}: {len(frame)} glosses, {frame['label'].nunique()} classes, "
        f"{args.out.stat().st_size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
