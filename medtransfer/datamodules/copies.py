"""Byte-identical images (docs/datasets.md, "Copies"): one image saved twice under two names, or the same
pixels twice in an array dataset. A copy on both sides of a split is the test image itself in training, and
the test score goes up with the leak, as with a patient in two splits.

Carved splits keep copies together, like a patient's images (``grouped_with_copies``). Splits the user made
with a copy on both sides are refused, naming the copies; a published dataset's official splits are kept with
a warning (``check_copies``, which also warns about copies that carry different labels, in any split). Images
re-encoded or resized are not byte-identical and are not found here.

Finding copies stays cheap on large datasets: images are compared by a key every source gives at no cost (a
file's size; an in-memory image's pixel digest), and only images that share one are read, first their ends,
then, where those match too, whole.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..task import SPLITS
from .errors import CopiedImageError
from .fractions import patient_keys
from .leaks import named, refuse_or_warn
from .sources import Source

log = logging.getLogger(__name__)
COPY_FIX = ("delete or unlist one of each pair, or give both copies the same split (carved splits keep "
            "copies together)")

Member = tuple[int, int]  # (source number, row)


def copy_sets(sources: Sequence[Source], across: bool = False) -> list[list[Member]]:
    """Sets of two or more images among ``sources`` whose bytes are identical, as (source number, row);
    ``across``: only sets with images in more than one source."""
    sized: list[tuple[Member, object]] = []
    for number, source in enumerate(sources):
        keys = source.size_keys()
        if keys is not None:
            sized += [((number, row), key) for row, key in enumerate(keys)]
    sets = _equal_keys(sized, across)
    for whole in (False, True):
        sets = [found for members in sets for found in
                _equal_keys([(m, sources[m[0]].content_key(m[1], whole)) for m in members], across)]
    return sets


def _equal_keys(keyed: Sequence[tuple[Member, object]], across: bool) -> list[list[Member]]:
    """The members that share a (not None) key with another, one list per key."""
    buckets: dict[object, list[Member]] = defaultdict(list)
    for member, key in keyed:
        if key is not None:
            buckets[key].append(member)
    return [members for members in buckets.values()
            if len(members) > 1 and (not across or len({number for number, _ in members}) > 1)]


def grouped_with_copies(pool: Source) -> np.ndarray | None:
    """``pool``'s patient groups with the patients (or, without patients, the images) that share a
    byte-identical image joined into one group, so that carving never separates copies; ``pool.groups`` as
    it is when the pool holds no copies (the carved splits are then those of a dataset without this check)."""
    sets = copy_sets([pool])
    if not sets:
        return pool.groups
    keys = patient_keys(pool.groups) if pool.groups is not None else np.asarray(pool.ids, dtype=str)
    joined = _joined(keys.tolist(), [[row for _, row in members] for members in sets])
    log.info("%d sets of byte-identical images in the pool carved from: each set stays in one split",
             len(sets))
    return np.asarray([joined(key) for key in keys.tolist()])


def _joined(keys: list[str], rows_together: list[list[int]]) -> Callable[[str], str]:
    """A function from a key to its group's representative key, after joining the keys of each row set
    (union-find)."""
    parent = {key: key for key in keys}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for rows in rows_together:
        first = root(keys[rows[0]])
        for row in rows[1:]:
            parent[root(keys[row])] = first
    return root


def check_copies(dataset: str, sources: Mapping[str, Source], declared_by: str | None,
                 class_names: Sequence[str] = ()) -> None:
    """Raise ``CopiedImageError`` when an image has a byte-identical copy in another split the user made
    (``declared_by`` None), or warn naming who declared the splits; and warn about copies that carry
    different labels, in any split (one image cannot be both: a label table to check)."""
    names = [split for split in SPLITS if split in sources]
    sets = copy_sets([sources[split] for split in names])
    conflicting = [members for members in sets if not _same_labels(sources, names, members)]
    if conflicting:
        sets_named = named([" = ".join(f"{sources[names[n]].ids[row]!r} ({names[n]}, "
                                       f"{_label_text(sources[names[n]].labels[row], class_names)})"
                                       for n, row in members) for members in conflicting])
        log.warning("%s: %d set(s) of byte-identical images carry different labels: %s; one image cannot be "
                    "both: check the labels of these images", dataset, len(conflicting), sets_named)
    across = [members for members in sets if len({number for number, _ in members}) > 1]
    if not across:
        return
    copies = named([" = ".join(f"{sources[names[n]].ids[row]!r} ({names[n]})" for n, row in members)
                    for members in across])
    problem = (f"{len(across)} image(s) have a byte-identical copy in another split: {copies}; a model "
               "tested on an image it was trained on scores higher than on a new one (leakage)")
    refuse_or_warn(log, dataset, problem, declared_by, CopiedImageError, COPY_FIX)


def _same_labels(sources: Mapping[str, Source], names: list[str], members: list[Member]) -> bool:
    first, *others = [np.asarray(sources[names[n]].labels[row]) for n, row in members]
    return all(np.array_equal(first, other) for other in others)


def _label_text(label, class_names: Sequence[str]) -> str:
    """A class name (a list of findings for multilabel rows), or the class number without names."""
    label = np.asarray(label)
    if label.ndim:  # multilabel: the findings present
        found = [class_names[i] if i < len(class_names) else str(i) for i in np.flatnonzero(label)]
        return "+".join(found) or "no finding"
    number = int(label)
    return class_names[number] if number < len(class_names) else str(number)
