"""A model's classes: labels as a request gives them (class names or indices, one for all rows or one per row)
resolved to the int64 indices its graphs take, with refusals that list what the model knows."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidInput, LabelRequired, NotConditional

Label = int | str
# Labels as a request gives them, or int64 indices [N] that `resolve` already made.
Labels = Sequence[Label] | np.ndarray | None

# A label index as text: ASCII digits only (str.isdigit() also takes '²' and '①', which int() refuses) and few of
# them (int() of a 5,000-digit string raises, and no model has a billion classes).
_INDEX = re.compile(r"[0-9]{1,9}")


class LabelTable:
    """The class names of one model (none for an unconditional one) and how a request's labels map to them."""

    def __init__(self, model: str, kind: str, names: list[str] | None, conditional: bool) -> None:
        self.model = model
        self.kind = kind
        self.names = list(names or [])
        self.conditional = conditional  # the decoder takes a label

    def index(self, value: Label) -> int:
        """A class name from the manifest, or an index into it; names win when a string is both."""
        names = self.names
        if isinstance(value, str) and value in names:
            return names.index(value)
        if isinstance(value, int) and not isinstance(value, bool):
            index = value
        elif isinstance(value, str) and _INDEX.fullmatch(value.strip()):
            index = int(value.strip())  # safe: the pattern admits only what int() reads
        else:
            index = -1
        if not 0 <= index < len(names):
            shown = names if len(names) <= 20 else names[:20] + ["..."]
            given = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
            raise InvalidInput(
                f"label {given!r} is not a class of model {self.model!r}: give an index 0..{len(names) - 1} "
                f"or a class name from {shown}"
            )
        return index

    def resolve(self, labels: Labels, n: int, *, required: bool) -> np.ndarray | None:
        """Labels as int64 [n] (one label is repeated for every row); None when the model is not conditional."""
        if isinstance(labels, np.ndarray) and labels.dtype == np.int64 and labels.shape == (n,) and self.conditional:
            if n == 0 or (labels.min() >= 0 and labels.max() < len(self.names)):
                return labels  # indices already (from this method, or built from its result): checked in one pass
        if isinstance(labels, np.ndarray):
            labels = labels.tolist()  # indices from a caller: checked as any label is
        if labels is not None and not len(labels):
            labels = None
        if not self.conditional:
            if labels is not None:
                raise NotConditional(
                    f"model {self.model!r} is unconditional (kind {self.kind!r}): it takes no label; "
                    "drop the label, or use a conditional model (see GET /models)"
                )
            return None
        if labels is None:
            if required:
                raise LabelRequired(
                    f"model {self.model!r} is conditional: give a label (an index 0..{len(self.names) - 1} "
                    f"or a class name from {self.names})"
                )
            return None
        if len(labels) not in (1, n):
            raise InvalidInput(f"got {len(labels)} labels for {n} rows: give one label for all, or one per row")
        indices = np.array([self.index(v) for v in labels], dtype=np.int64)
        return np.broadcast_to(indices, (n,)).copy() if len(labels) == 1 else indices

    def names_of(self, indices: np.ndarray | None) -> list[str] | None:
        """The class names of label indices, for a response; None for none."""
        return None if indices is None else [self.names[i] for i in indices.tolist()]
