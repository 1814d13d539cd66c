"""Data sets shipped with moensemble, so that the main job runs offline.

``load_wordnet_glosses`` loads 117,659 WordNet 3.0 glosses labeled by their lexicographer
file (45 classes). The data are under the WordNet 3.0 licence, shipped next to them as
``moensemble/datasets/data/WORDNET_LICENSE.txt``. ``make_mixed_table`` generates a table
of mixed column types (numbers with gaps, categories, a date, a note drawn from the glosses);
``make_modality_table`` one whose label is in the text for some rows, in the numbers for others.
"""

from __future__ import annotations

from moensemble.datasets._mixed import make_mixed_table
from moensemble.datasets._modality import make_modality_table
from moensemble.datasets._synthetic import make_regime_classification, make_regimes
from moensemble.datasets._wordnet import load_wordnet_glosses

__all__ = ["load_wordnet_glosses", "make_mixed_table", "make_modality_table",
           "make_regime_classification", "make_regimes"]
