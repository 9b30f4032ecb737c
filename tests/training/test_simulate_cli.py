"""``nba simulate`` as a user runs it: flags checked by name, days mapped to the world's months, the same
seed writing the same bytes, and a summary that matches what was written."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from service.cli import main
from training.simulate_cli import DAYS_PER_MONTH, months_for
from training.world import TABLES

SMALL = ("--customers", "1000", "--agents", "10", "--end", "2026-01-31")


def _simulate(*args: str, data_dir: Path | None = None) -> Result:
    env = {"NBA_DATA_DIR": str(data_dir)} if data_dir else {}
    return CliRunner().invoke(main, ["simulate", *args], env=env)


def test_same_seed_same_bytes_other_seed_other_tables(tmp_path: Path) -> None:
    runs = {
        "a": _simulate(*SMALL, "--days", "100", "--seed", "5", "--out", str(tmp_path / "a")),
        "b": _simulate(*SMALL, "--days", "100", "--seed", "5", "--out", str(tmp_path / "b")),
        "c": _simulate(*SMALL, "--days", "100", "--seed", "6", "--out", str(tmp_path / "c")),
    }
    for result in runs.values():
        assert result.exit_code == 0, result.output
    for table in TABLES:
        file = f"{table}.parquet"
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), table
    for table in ("customer_snapshots", "customer_events", "churn_labels"):
        a, c = pq.read_table(tmp_path / "a" / f"{table}.parquet"), pq.read_table(tmp_path / "c" / f"{table}.parquet")
        assert not a.equals(c), table


def test_days_round_up_to_months_and_the_summary_matches_the_files(tmp_path: Path) -> None:
    result = _simulate(*SMALL, "--days", "100", "--seed", "5", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "--days 100: the world moves in 30-day months, so 4 months (120 days)" in result.output
    stamp = json.loads((tmp_path / "world.json").read_text())
    assert stamp["config"] == {"customers": 1000, "agents": 10, "months": 4, "seed": 5}
    assert stamp["end"] == "2026-01-31"
    snapshots = pq.read_table(tmp_path / "customer_snapshots.parquet", columns=["feature_ts"]).column(0)
    assert len(set(snapshots.to_pylist())) == 4  # one snapshot date per written month
    assert max(snapshots.to_pylist()).date().isoformat() == "2026-01-31"
    for table in TABLES:
        rows = pq.read_metadata(tmp_path / f"{table}.parquet").num_rows
        line = next(line for line in result.output.splitlines() if f"{table}.parquet" in line)
        assert f"{rows:,}" in line
        assert stamp["rows"]["events" if table == "customer_events" else table] == rows


def test_default_out_is_where_training_reads(tmp_path: Path) -> None:
    result = _simulate(*SMALL, "--days", "90", data_dir=tmp_path)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "world").glob("*.parquet")) == sorted(f"{t}.parquet" for t in TABLES)
    assert "30-day months, so" not in result.output  # 90 days are whole months: nothing to say


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("--customers", "999"), "--customers"),
        (("--customers", "1000001"), "--customers"),
        (("--customers", "lots"), "--customers"),
        (("--days", "89"), "--days"),
        (("--days", "1081"), "--days"),
        (("--agents", "4"), "--agents"),
        (("--seed", "x"), "--seed"),
        (("--end", "31/01/2026"), "--end"),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, tuple) else v,
)
def test_bad_flags_are_named(tmp_path: Path, args: tuple[str, ...], flag: str) -> None:
    result = _simulate(*args, "--out", str(tmp_path / "w"))
    assert result.exit_code == 2
    assert f"Invalid value for '{flag}'" in result.output
    assert not (tmp_path / "w").exists()


def test_help_says_how_days_are_counted() -> None:
    result = CliRunner().invoke(main, ["simulate", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "30-day months" in result.output
    assert "rounded up" in result.output


@given(days=st.integers(3 * DAYS_PER_MONTH, 36 * DAYS_PER_MONTH))
def test_months_cover_the_days_and_no_more(days: int) -> None:
    months = months_for(days)
    assert 3 <= months <= 36
    assert (months - 1) * DAYS_PER_MONTH < days <= months * DAYS_PER_MONTH
