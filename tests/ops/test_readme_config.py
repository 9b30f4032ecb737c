"""README's configuration table against the code: every variable the code reads has a row, every row names one it
reads, and each default the table gives is the code's (the variables: :mod:`tests.ops.environment`)."""

from __future__ import annotations

import re

import pytest

from tests.ops.environment import ROOT, variables

HEADER = "| variable | default | what it does |"
_NAME = re.compile(r"`([A-Z][A-Z0-9_]*)`")
_CODE = re.compile(r"`([^`]*)`")


def _rows() -> list[tuple[str, str]]:
    """The table's rows as (variables cell, default cell)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == HEADER]
    assert len(starts) == 1, f"README holds {len(starts)} configuration tables; one is the point"
    rows = []
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, f"a row of three cells: {line}"
        rows.append((cells[0], cells[1]))
    return rows


def table() -> dict[str, str | None]:
    """Variable -> the default the table gives it (the first code span of its part of the default cell), or None
    where the cell says it in words (``unset: ...``, ``this host's name``)."""
    found: dict[str, str | None] = {}
    for names_cell, default_cell in _rows():
        names = _NAME.findall(names_cell.split("(or")[0]) + _NAME.findall("".join(names_cell.split("(or")[1:]))
        parts = default_cell.split(" / ")
        for i, name in enumerate(names):
            part = parts[i] if len(parts) == len(names) else default_cell
            code = _CODE.match(part.strip())
            assert name not in found, f"{name} has two rows"
            found[name] = code.group(1) if code else None
    return found


def test_every_variable_the_code_reads_has_a_row() -> None:
    missing = {name: [v.where for v in found] for name, found in variables().items() if name not in table()}
    assert missing == {}, "add these to README's configuration table"


def test_every_row_names_a_variable_the_code_reads() -> None:
    assert sorted(set(table()) - set(variables())) == []


def test_each_default_in_the_table_is_the_code_s() -> None:
    documented = table()
    wrong = {}
    for name, found in variables().items():
        for var in found:
            if var.default is not None and documented.get(name) != var.default:
                wrong[name] = f"README says {documented.get(name)!r}, {var.where} defaults to {var.default!r}"
    assert wrong == {}


@pytest.mark.parametrize(
    ("variable", "default"),
    [("NBA_PORT", "8000"), ("NBA_HOST", "127.0.0.1"), ("NBA_EXPLORE_ASSIGN", "off"), ("REDIS_URL", None)],
    ids=["second-of-a-pair", "first-of-a-pair", "one-default-for-two", "in-words"],
)
def test_the_table_is_read_as_written(variable: str, default: str | None) -> None:
    assert table()[variable] == default
