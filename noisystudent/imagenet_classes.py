"""ImageNet-2012 class names shipped with the package (synset ids and WordNet lemmas, label order).

The 1,000 classes are in the order of tfds `imagenet2012` labels and of the published
EfficientNet / Noisy Student checkpoints (sorted synset ids), so index i of a
1,000-way output is line i of `data/imagenet2012_classes.tsv`.
"""

from __future__ import annotations

import functools

import importlib_resources

NUM_CLASSES = 1000


@functools.lru_cache(maxsize=1)
def _rows() -> tuple[tuple[str, str], ...]:
    text = (importlib_resources.files("noisystudent") / "data" / "imagenet2012_classes.tsv").read_text("utf-8")
    rows = tuple(tuple(line.split("\t", 1)) for line in text.splitlines() if line and not line.startswith("#"))
    if len(rows) != NUM_CLASSES:
        raise RuntimeError(f"imagenet2012_classes.tsv holds {len(rows)} classes, not {NUM_CLASSES}")
    return rows


def imagenet_synsets() -> list[str]:
    """WordNet synset ids, e.g. 'n01440764', in label order."""
    return [synset for synset, _ in _rows()]


def imagenet_class_names() -> list[str]:
    """Short names (the first WordNet lemma), e.g. 'tench', in label order."""
    return [lemmas.split(",")[0].strip() for _, lemmas in _rows()]

