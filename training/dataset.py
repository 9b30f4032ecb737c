"""Read a user's own table (CSV or parquet) and infer how each column should feed a model.

Exports from CRMs and billing systems are not typed: numbers arrive as text with blank cells, yes/no
flags as words, ids and free text beside categories. The rules, applied to the trimmed non-blank cells
of each column (blank and whitespace-only cells are missing):

- number: every cell is a plain decimal number or a missing-value word (NA, N/A, null, none, nan); commas
  as thousands separators only when the column shows they cannot be decimal commas (a dot decimal or a
  second comma group somewhere in it). Parquet integer and float columns are numbers as they are.
- boolean: every cell is a word of one pair (yes/no, true/false, y/n, any case) or a missing-value word.
- category: any other text with few distinct values (at most ``MAX_LEVELS``, and at least two rows per
  level on average); more than that is free text or an identifier, and is dropped with a note.
- dates and timestamps (typed, or ISO text) are dropped: an absolute date means something else every day.
- a column with one value only (or none) is dropped: it cannot tell rows apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from training.errors import DatasetError
from training.table_schema import (
    FALSE_WORDS,
    GROUPED_PATTERN,
    MISSING_WORDS,
    NUMBER_PATTERN,
    TRUE_WORDS,
    FeatureColumn,
    TableSchema,
    as_text,
    floats,
    is_numeric_type,
)

MAX_LEVELS = 100
_DELIMITERS = (",", ";", "\t", "|")
_SHOWN_VALUES = 8
_SHOWN_LEVELS = 4
_DATE = "a date or time: not a model input (pass it as --time-column to split by it)"


@dataclass(frozen=True)
class ColumnReport:
    """One line of the summary a user reads: what a column became and why."""

    name: str
    role: str
    """number, boolean, category, entity, label, time or dropped."""
    detail: str


@dataclass(frozen=True)
class Dataset:
    """A user's table, read and understood: model input, label and (optionally) time per kept row."""

    schema: TableSchema
    x: np.ndarray
    y: np.ndarray
    time: np.ndarray | None
    """Sortable time per row (seconds or the column's own numbers), when a time column was given."""
    columns: tuple[ColumnReport, ...]
    rows_read: int
    notes: tuple[str, ...]


def _flag(path: Path, what: str) -> str:
    return f"--dataset {path}: {what}"


def _delimiter(path: Path) -> str:
    """The header line's most frequent separator among , ; tab | (exports differ by locale)."""
    with path.open("rb") as f:
        header = f.readline().decode("utf-8", errors="replace")
    return max(_DELIMITERS, key=lambda d: (header.count(d), d == ","))


def _read_csv(path: Path) -> tuple[pa.Table, list[str]]:
    """Every column as text, so the inference below, not the reader, decides types."""
    notes: list[str] = []
    parse = pcsv.ParseOptions(delimiter=_delimiter(path))
    for encoding in ("utf8", "latin-1"):
        read = pcsv.ReadOptions(encoding=encoding)
        try:
            names = pcsv.open_csv(path, read_options=read, parse_options=parse).schema.names
            convert = pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
            table = pcsv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as exc:
            if "invalid UTF8" in str(exc) and encoding == "utf8":
                notes.append("not UTF-8: read as Latin-1")
                continue
            if "Empty CSV file" in str(exc):
                raise DatasetError(_flag(path, "the file is empty")) from exc
            raise DatasetError(_flag(path, f"cannot read as CSV: {str(exc).splitlines()[0]}")) from exc
        if parse.delimiter != ",":
            notes.append(f"columns separated by {parse.delimiter!r}")
        return table, notes
    raise AssertionError("latin-1 decodes every byte")


def read_table(path: Path) -> tuple[pa.Table, list[str]]:
    """The table in ``path`` (.csv or .parquet) and notes on how it was read."""
    if not path.is_file():
        raise DatasetError(_flag(path, "no such file"))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table, notes = _read_csv(path)
    elif suffix in (".parquet", ".pq"):
        try:
            table, notes = pq.read_table(path), []
        except (pa.ArrowInvalid, OSError) as exc:
            raise DatasetError(_flag(path, f"cannot read as parquet: {str(exc).splitlines()[0]}")) from exc
    else:
        raise DatasetError(_flag(path, f"unknown file type {path.suffix or '(none)'!r}: use .csv or .parquet"))
    names = table.column_names
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DatasetError(_flag(path, f"column name(s) used twice: {', '.join(twice)}"))
    if table.num_rows == 0:
        raise DatasetError(_flag(path, "the table has no rows"))
    return table, notes


def _values(counts: pa.StructArray) -> str:
    """Distinct values for an error message, most frequent first, at most a handful."""
    pairs = sorted(
        zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True),
        key=lambda vc: (-vc[1], str(vc[0])),
    )
    shown = ", ".join(f"{v!r} ({c})" for v, c in pairs[:_SHOWN_VALUES])
    return shown + (f" and {len(pairs) - _SHOWN_VALUES} more" if len(pairs) > _SHOWN_VALUES else "")


def _not_missing_word(text: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Non-blank cells that are not a missing-value word."""
    return pc.drop_null(pc.filter(text, pc.invert(pc.is_in(pc.utf8_lower(text), value_set=pa.array(MISSING_WORDS)))))


def _boolean_pair(cells: pa.ChunkedArray | pa.Array) -> bool:
    lower = pc.utf8_lower(cells)
    return any(
        bool(pc.all(pc.is_in(lower, value_set=pa.array([yes, no]))).as_py())
        for yes, no in zip(TRUE_WORDS, FALSE_WORDS, strict=True)
    )


def _dates(cells: pa.ChunkedArray | pa.Array) -> bool:
    """Whether every cell is an ISO date or timestamp."""
    try:
        cells.cast(pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _text_as_number(cells: pa.ChunkedArray | pa.Array) -> FeatureColumn | None:
    """A number column for text cells (all non-missing-word cells readable), or None."""
    plain = pc.match_substring_regex(cells, NUMBER_PATTERN)
    if bool(pc.all(plain).as_py()):
        return FeatureColumn("", "number")
    grouped = pc.match_substring_regex(cells, GROUPED_PATTERN)
    if not bool(pc.all(pc.or_(plain, grouped)).as_py()):
        return None
    # "1,234" alone could be a decimal comma; a dot decimal or a second comma group settles it.
    dotted = bool(pc.any(pc.match_substring(cells, ".")).as_py())
    many = bool(pc.any(pc.match_substring_regex(cells, r",\d{3},")).as_py())
    return FeatureColumn("", "number", thousands=True) if dotted or many else None


def infer_column(name: str, column: pa.ChunkedArray | pa.Array) -> FeatureColumn | str:
    """The feature a column makes, or why it makes none (see the module's rules)."""
    t = column.type
    if pa.types.is_temporal(t):
        return _DATE
    if is_numeric_type(t) or pa.types.is_boolean(t):
        distinct = len(pc.unique(pc.drop_null(column)))
        if distinct < 2:
            return "one value only"
        return FeatureColumn(name, "boolean" if pa.types.is_boolean(t) else "number")
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)):
        return f"unsupported type {t}"
    text = as_text(column)
    distinct = pc.unique(pc.drop_null(text))
    if len(distinct) < 2:
        return "one value only" if len(distinct) else "every cell is blank"
    cells = _not_missing_word(distinct)
    if len(cells) and (number := _text_as_number(cells)) is not None:
        return FeatureColumn(name, "number", thousands=number.thousands)
    if len(cells) and _boolean_pair(cells):
        return FeatureColumn(name, "boolean")
    if _dates(distinct):
        return _DATE
    filled = len(text) - text.null_count
    if len(distinct) > MAX_LEVELS or 2 * len(distinct) > filled:
        return f"{len(distinct)} distinct values in {filled} rows: free text or an id"
    return FeatureColumn(name, "category", levels=tuple(sorted(distinct.to_pylist())))


def _detail(feature: FeatureColumn, encoded: np.ndarray) -> str:
    parts = {
        "category": f"{len(feature.levels)} levels: {', '.join(feature.levels[:_SHOWN_LEVELS])}"
        + (", …" if len(feature.levels) > _SHOWN_LEVELS else ""),
        "boolean": f"{np.nanmean(encoded):.0%} true",
        "number": f"{np.nanmin(encoded):g} to {np.nanmax(encoded):g}"
        + (", thousands separators" if feature.thousands else ""),
    }
    missing = int(np.isnan(encoded).sum())
    return parts[feature.kind] + (f"; {missing} missing" if missing else "")


def _column(table: pa.Table, path: Path, flag: str, name: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise DatasetError(f"{flag} {name!r}: no such column in {path.name}; columns: {', '.join(table.column_names)}")
    return table.column(name)


def read_label(column: pa.ChunkedArray, name: str, positive: str | None) -> tuple[np.ndarray, str]:
    """1.0 / 0.0 per row (NaN where blank) and the value that counts as positive."""
    flag = f"--label-column {name!r}"
    text = as_text(column)
    counts = pc.value_counts(pc.drop_null(text))
    values = [str(v) for v in counts.field("values").to_pylist()]
    if not values:
        raise DatasetError(f"{flag}: every cell is blank")
    if len(values) < 2:
        raise DatasetError(f"{flag} has one value only, {_values(counts)}: a model needs both outcomes")
    if positive is not None:
        positive = positive.strip()
        if positive not in values:
            raise DatasetError(f"--positive-label {positive!r} is not a value of {name!r}; values: {_values(counts)}")
    elif len(values) > 2:
        raise DatasetError(
            f"{flag} has {len(values)} values, {_values(counts)}: name the positive one with --positive-label"
        )
    else:
        lower = {v.lower(): v for v in values}
        positive = next((lower[w] for w in ("1", "1.0", *TRUE_WORDS) if w in lower), None)
        known = {"0", "0.0", "1", "1.0", *TRUE_WORDS, *FALSE_WORDS}
        if positive is None or not set(lower) <= known:
            raise DatasetError(
                f"{flag} has values {_values(counts)}: not 0/1, yes/no or true/false; "
                "name the positive one with --positive-label"
            )
    return floats(pc.if_else(pc.equal(text, positive), 1.0, 0.0)), positive


def read_time(column: pa.ChunkedArray, name: str) -> np.ndarray:
    """A sortable float per row (NaN where blank): dates and timestamps as epoch seconds, numbers as they are."""
    flag = f"--time-column {name!r}"
    t = column.type
    if is_numeric_type(t):
        return floats(column)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        text = as_text(column)
        if text.null_count == len(text):
            raise DatasetError(f"{flag}: every cell is blank")
        for target in (pa.timestamp("us"), pa.timestamp("us", "UTC")):
            try:
                column = text.cast(target)
                break
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        else:
            first = text.drop_null()[0].as_py()
            raise DatasetError(f"{flag}: cannot read {first!r} as a date (2024-01-31, 2024-01-31 10:00:00) or a number")
    elif not (pa.types.is_date(t) or pa.types.is_timestamp(t)):
        raise DatasetError(f"{flag}: a {t} column cannot order rows; give dates, timestamps or numbers")
    micros = column.cast(pa.timestamp("us", getattr(column.type, "tz", None))).cast(pa.int64())
    return floats(micros) / 1e6


def load_dataset(
    path: Path, *, label: str, entity: str, positive: str | None = None, time: str | None = None
) -> Dataset:
    """Read ``path``, check the named columns, infer every other column's kind and encode the model input."""
    table, notes = read_table(path)
    roles = {"--label-column": label, "--entity-column": entity, **({"--time-column": time} if time else {})}
    for flag, name in roles.items():
        _column(table, path, flag, name)
    if len(set(roles.values())) < len(roles):
        raise DatasetError(f"{' and '.join(roles)} must name different columns, got {', '.join(roles.values())}")
    y, positive = read_label(table.column(label), label, positive)
    order = read_time(table.column(time), time) if time else None
    keep = ~np.isnan(y) & (~np.isnan(order) if order is not None else True)
    rows_read = table.num_rows
    if not keep.all():
        notes.append(f"{int((~keep).sum())} rows without a {'label' if time is None else 'label or time'} left out")
        table = table.filter(pa.array(keep))
        y, order = y[keep], (order[keep] if order is not None else None)
    reports = [
        ColumnReport(entity, "entity", "row id, not a model input"),
        ColumnReport(label, "label", f"positive = {positive!r}, {y.mean():.1%} of rows"),
    ]
    if time:
        reports.append(ColumnReport(time, "time", "orders the train / validation / test split"))
    features: list[FeatureColumn] = []
    columns: list[np.ndarray] = []
    for name in table.column_names:
        if name in roles.values():
            continue
        found = infer_column(name, table.column(name))
        if isinstance(found, str):
            reports.append(ColumnReport(name, "dropped", found))
            continue
        encoded = found.encode(table.column(name))
        features.append(found)
        columns.append(encoded)
        reports.append(ColumnReport(name, found.kind, _detail(found, encoded)))
    if not features:
        raise DatasetError(_flag(path, "no column besides the label, id and time can be a model input"))
    schema = TableSchema(entity=entity, label=label, positive=positive, features=tuple(features), time=time)
    x = np.column_stack(columns)
    return Dataset(schema, x, y.astype(np.int8), order, tuple(reports), rows_read, tuple(notes))
