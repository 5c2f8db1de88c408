"""Private attributes of the tabular datasets: one column, or the intersection of two.

A tabular dataset offers several private attributes through its option
``private`` (Adult: ``sex``, ``race``; COMPAS: ``race``, ``sex``; German:
``sex``, ``age``) and the intersection of two, written ``a+b``
(``private=sex+race``). The intersection is a joint label with one class per
combination of values present in ``train``, numbered in the sorted order of the
combinations' codes; rows of the other splits whose combination never occurs in
``train`` are dropped (there is no class to give them), which
:func:`joint_label` reports through its mask.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def attributes_of(private: str) -> tuple[str, ...]:
    """``"sex+race"`` -> ``("sex", "race")``; the option's choices already validated the names."""
    return tuple(part.strip() for part in private.split("+"))


def intersection_choices(single: Sequence[str]) -> tuple[str, ...]:
    """The values of a ``private`` option: each attribute, then the intersection of the first two."""
    return (*single, "+".join(single[:2]))


def joint_label(
    codes: Mapping[str, np.ndarray], attributes: Sequence[str], in_train: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The private label of every row, a mask of the rows that have one, and the class names.

    ``codes[a]`` holds attribute ``a``'s integer code per row (0..K_a-1) and
    ``in_train`` marks the rows of ``train``. One attribute: its codes as they
    are (every row kept). Several: one class per combination present in
    ``train``; rows elsewhere with an unseen combination get -1 and ``False``
    in the mask. Names are the combinations written ``a=code+b=code``.
    """
    if len(attributes) == 1:
        (name,) = attributes
        values = np.asarray(codes[name], dtype=np.int64)
        return values, np.ones(len(values), dtype=bool), [f"{name}={v}" for v in range(int(values.max()) + 1)]
    stacked = np.stack([np.asarray(codes[a], dtype=np.int64) for a in attributes], axis=1)
    present = np.unique(stacked[in_train], axis=0)  # sorted lexicographically
    lookup = {tuple(row): index for index, row in enumerate(present.tolist())}
    labels = np.array([lookup.get(tuple(row), -1) for row in stacked.tolist()], dtype=np.int64)
    names = ["+".join(f"{a}={v}" for a, v in zip(attributes, row)) for row in present.tolist()]
    return labels, labels >= 0, names
