"""``nba score``: the churn probability of every row of a user's table, by a model trained on such a table.

The table is read by the reader training used (:func:`training.dataset.read_table`) and each model input is
encoded by the rule the training run recorded in the bundle's :class:`TableSchema`: the same number parsing,
yes/no words and category codes. A category level or yes/no word training never saw is missing (LightGBM's
missing branch), never a new code, and the user is told how many rows had one. Text in a number column
stops the run with its row: it means the export changed (a currency sign, a decimal comma), and scoring it
as missing would quietly skew every such row.

The contract's own models are refused: their inputs are the feature store's customer vector (windowed event
counts, derived features as of a decision time), which a flat file cannot be checked to hold.
"""

from __future__ import annotations

import csv
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.bundle import ModelBundle
from training.errors import DatasetError, ScoringError
from training.table_schema import FeatureColumn, TableSchema, as_text

_REF = re.compile(r"^(?P<name>[^@/\s]+)(?:@(?P<alias>[\w-]+)|/(?P<version>[1-9]\d*))$")
_SHOWN = 3
_SHOWN_CHARS = 40
HEADER = ("entity_id", "probability")


@dataclass(frozen=True)
class ModelRef:
    """A registered model version as typed after ``--model``: ``NAME@ALIAS`` or ``NAME/VERSION``."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Read ``NAME@ALIAS`` or ``NAME/VERSION``; anything else is a :class:`ScoringError` showing both forms."""
        found = _REF.match(text.strip())
        if found is None:
            raise ScoringError(
                f"--model {text!r}: give NAME@ALIAS or NAME/VERSION, "
                "e.g. nba-churn-byo-telco@champion or nba-churn-byo-telco/3 (nba models list shows them)"
            )
        return cls(found["name"], found["alias"], found["version"])

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


@dataclass(frozen=True)
class Scores:
    """One probability per input row, in the input's order, with the row's entity id."""

    entity_ids: list[str | None]
    probability: np.ndarray
    notes: tuple[str, ...]
    """Cells the model could not read and scored as missing, per column."""


def table_schema(bundle: ModelBundle, name: str, version: str) -> TableSchema:
    """The bundle's table layout, or a :class:`ScoringError` for a model that scores from the feature store."""
    if bundle.schema is None:
        raise ScoringError(
            f"{name} version {version} is the feature contract's {bundle.kind} model: the service scores it on "
            "the feature store's live vectors, not on a file; nba score takes a model trained with "
            "nba train churn --dataset (named ...-churn-byo-...)"
        )
    return bundle.schema


def check_out(out: Path, dataset: Path) -> None:
    """Fail before any work when ``--out`` cannot be written or would overwrite the table being scored."""
    if out.is_dir():
        raise ScoringError(f"--out {out}: is a directory; give a file name such as {out / 'scores.csv'}")
    if not out.parent.is_dir():
        raise ScoringError(f"--out {out}: no such directory {out.parent}")
    if not os.access(out.parent, os.W_OK):
        raise ScoringError(f"--out {out}: the directory {out.parent} is not writable")
    if out.exists() and dataset.exists() and out.samefile(dataset):
        raise ScoringError(f"--out {out}: is the --dataset file; write the scores to another file")


def _shown(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…")


def _ids(column: pa.ChunkedArray) -> list[str | None]:
    """The id cells as written (not trimmed), so they join back to the user's table."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    ids: list[str | None] = column.cast(pa.string()).to_pylist()
    return ids


def _unseen(feature: FeatureColumn, text: pa.ChunkedArray | pa.Array, rows: np.ndarray) -> str:
    """The note for a category or yes/no column with cells training never saw: how many, and which."""
    seen = sorted(str(v) for v in pc.unique(pc.take(text, pa.array(rows))).to_pylist())
    shown = ", ".join(map(_shown, seen[:_SHOWN])) + (f" and {len(seen) - _SHOWN} more" if seen[_SHOWN:] else "")
    what = "a level" if feature.kind == "category" else "a word other than the yes/no ones"
    return f"{feature.name}: {len(rows)} row(s) with {what} training never saw ({shown}), scored as missing"


def score_table(
    bundle: ModelBundle, schema: TableSchema, table: pa.Table, *, path: Path, entity: str | None = None
) -> Scores:
    """Encode ``table`` as the training run did and score every row; ``entity`` overrides the id column's name.

    Raises :class:`DatasetError` naming the column for an id or model input the table lacks, and the column
    and row (counted from 1 below the header) for text in a number column.
    """
    columns = table.column_names
    entity = entity or schema.entity
    if entity not in columns:
        raise DatasetError(
            f"--dataset {path.name}: no entity column {entity!r} (name yours with --entity-column); "
            f"columns: {', '.join(columns)}"
        )
    missing = [f.name for f in schema.features if f.name not in columns]
    if missing:
        raise DatasetError(
            f"--dataset {path.name}: lacks the column(s) the model reads {', '.join(map(repr, missing))}; "
            f"columns: {', '.join(columns)}"
        )
    inputs: list[np.ndarray] = []
    notes: list[str] = []
    for feature in schema.features:
        column = table.column(feature.name)
        encoded = feature.encode(column)
        unread = np.flatnonzero(feature.unread(column, encoded))
        inputs.append(encoded)
        if not len(unread):
            continue
        text = as_text(column)
        if feature.kind == "number":
            more = f"; {len(unread) - 1} more row(s) like it" if len(unread) > 1 else ""
            raise DatasetError(
                f"--dataset {path.name}: column {feature.name!r}, row {unread[0] + 1}: "
                f"{_shown(text[int(unread[0])].as_py())} is not a number{more}"
            )
        notes.append(_unseen(feature, text, unread))
    x = np.column_stack(inputs) if inputs else np.empty((table.num_rows, 0))
    return Scores(_ids(table.column(entity)), bundle.predict(x), tuple(notes))


def write_scores(scores: Scores, out: Path) -> None:
    """Write ``entity_id,probability`` rows to ``out`` through a temporary file beside it, renamed at the end,
    so ``out`` is either the whole answer or untouched."""
    part = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with part.open("x", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(HEADER)
            writer.writerows(zip(scores.entity_ids, scores.probability.tolist(), strict=True))
        part.replace(out)
    except OSError as exc:
        raise ScoringError(f"--out {out}: cannot write: {exc.strerror or exc}") from exc
    finally:
        part.unlink(missing_ok=True)
