"""The input layout of a model trained on a user's own table: which columns it reads, and how.

:mod:`training.dataset` infers it once from the training table; the bundle keeps it, so a later export of
the same table is encoded the way training encoded it: the same number parsing, the same yes/no words, the
same category codes. A cell that no longer fits (a new category level, an unknown yes/no word, text in a
number column) becomes missing, which LightGBM handles, rather than a guess or a crash; :meth:`FeatureColumn.unread`
finds those cells, so scoring can say so (and refuses text in a number column, which means the export changed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.errors import DatasetError

ColumnKind = Literal["number", "boolean", "category"]

NUMBER_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
"""A plain decimal number: no thousands separator, no currency sign, no inf/nan words."""
GROUPED_PATTERN = r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$"
"""A number whose thousands are separated by commas (1,234 or 1,234,567.5)."""
TRUE_WORDS = ("yes", "true", "y")
FALSE_WORDS = ("no", "false", "n")
"""Yes/no words, compared lower-cased; position i of each tuple forms one pair (yes/no, true/false, y/n)."""
MISSING_WORDS = ("na", "n/a", "nan", "null", "none")
"""Cells that mean "no value", compared lower-cased, like a blank cell."""
BYO_CONTRACT_PREFIX = "byo-"
"""Start of a bundle's ``contract_version`` when it was trained on a user's table, not the feature contract."""


def as_text(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """The column as trimmed strings, with blank and whitespace-only cells as missing."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    trimmed = pc.utf8_trim_whitespace(column.cast(pa.string()))
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def is_numeric_type(t: pa.DataType) -> bool:
    """Integers and floats (not booleans), which need no parsing."""
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def floats(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The column as float64 numbers, NaN where missing."""
    out: np.ndarray = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return out


@dataclass(frozen=True)
class FeatureColumn:
    """One model input: a column of the user's table and the rule that turns its cells into floats."""

    name: str
    kind: ColumnKind
    levels: tuple[str, ...] = ()
    """For categories: the levels seen in training, in code order (sorted)."""
    thousands: bool = False
    """For numbers written as text: commas separate thousands (1,234.50)."""

    def encode(self, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """The column's cells as the floats the model sees (NaN for missing or unreadable)."""
        if self.kind != "category" and (is_numeric_type(column.type) or pa.types.is_boolean(column.type)):
            return floats(column)
        text = as_text(column)
        if self.kind == "category":
            return floats(pc.index_in(text, value_set=pa.array(self.levels, pa.string())))
        if self.kind == "boolean":
            lower = pc.utf8_lower(text)
            yes = pc.is_in(lower, value_set=pa.array(TRUE_WORDS))
            no = pc.is_in(lower, value_set=pa.array(FALSE_WORDS))
            return floats(pc.if_else(yes, 1.0, pc.if_else(no, 0.0, pa.scalar(None, pa.float64()))))
        readable = pc.match_substring_regex(text, NUMBER_PATTERN)
        if self.thousands:
            readable = pc.or_(readable, pc.match_substring_regex(text, GROUPED_PATTERN))
            text = pc.replace_substring(text, ",", "")
        return floats(pc.if_else(readable, text, pa.scalar(None, pa.string())))

    def unread(self, column: pa.ChunkedArray | pa.Array, encoded: np.ndarray) -> np.ndarray:
        """Which cells hold a value that :meth:`encode` could not read and made missing (``encoded`` is its
        output): a category level or yes/no word training never saw, text that is not a number. Blank cells
        and missing-value words (NA, null, ...) are missing, not unread."""
        if self.kind != "category" and (is_numeric_type(column.type) or pa.types.is_boolean(column.type)):
            return np.zeros(len(column), dtype=bool)
        text = as_text(column)
        missing_word = pc.is_in(pc.utf8_lower(text), value_set=pa.array(MISSING_WORDS))
        present = pc.and_(pc.is_valid(text), pc.invert(missing_word))
        return np.asarray(present.to_numpy(zero_copy_only=False), dtype=bool) & np.isnan(encoded)


@dataclass(frozen=True)
class TableSchema:
    """How a model trained on a user's table reads that table."""

    entity: str
    """The id column: carried through to scores, never a model input."""
    label: str
    positive: str
    """The label value (trimmed) that counts as the positive class."""
    features: tuple[FeatureColumn, ...]
    time: str | None = None
    """The column that ordered the train / validation / test split, if one did."""

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's input columns, in order."""
        return tuple(f.name for f in self.features)

    @property
    def categorical_indices(self) -> list[int]:
        """Positions of the category inputs, for LightGBM's native categorical handling."""
        return [i for i, f in enumerate(self.features) if f.kind == "category"]

    @property
    def contract_version(self) -> str:
        """``byo-`` and a hash of the input layout: never equal to the feature contract's version, so the
        service refuses to serve such a bundle as its contract churn model."""
        layout = json.dumps([asdict(f) for f in self.features], sort_keys=True)
        return BYO_CONTRACT_PREFIX + hashlib.sha256(layout.encode()).hexdigest()[:12]

    def encode(self, table: pa.Table) -> np.ndarray:
        """The model input for ``table``'s rows; the table must hold every feature column."""
        missing = [f.name for f in self.features if f.name not in table.column_names]
        if missing:
            raise DatasetError(f"the table lacks column(s) the model was trained on: {', '.join(missing)}")
        if not self.features:
            return np.empty((table.num_rows, 0))
        return np.column_stack([f.encode(table.column(f.name)) for f in self.features])
