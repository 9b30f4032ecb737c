"""``nba score``: write a churn probability for every row of a table, by a model trained with ``--dataset``."""

from __future__ import annotations

from pathlib import Path

import click

from features import OfflineSettings
from features.console import settings_from_env
from training.console import Reporter, abort
from training.dataset import read_table
from training.errors import TrainingError
from training.score import ModelRef, check_out, score_table, table_schema, write_scores
from training.settings import MlflowSettings
from training.tracking import ModelRegistry


@click.command("score")
@click.option(
    "--model",
    "model",
    required=True,
    metavar="NAME@ALIAS|NAME/VERSION",
    help="The registered model version, by alias or number (nba-churn-byo-telco@champion, nba-churn-byo-telco/2).",
)
@click.option(
    "--dataset",
    type=click.Path(path_type=Path),
    required=True,
    help="The table to score (.csv or .parquet), read as training read its table; the label column may be absent.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="The CSV to write (entity_id,probability, one row per input row, in its order); replaced whole or not at all.",
)
@click.option("--entity-column", help="The id column, when this file names it otherwise than the training file did.")
def score(model: str, dataset: Path, out: Path, entity_column: str | None) -> None:
    """Score every row of --dataset with a model trained by nba train churn --dataset.

    Each column is read the way the training run read it; a category level or yes/no word it never saw
    scores as missing (the lines on stderr say how many rows had one).
    """
    reporter = Reporter()
    try:
        ref = ModelRef.parse(model)
        check_out(out, dataset)
        with reporter.step(f"Reading {dataset}"):
            table, notes = read_table(dataset)
        models = ModelRegistry(settings_from_env(MlflowSettings), settings_from_env(OfflineSettings).data_dir)
        with reporter.step(f"Loading {ref}"):
            bundle, name, version = models.load_version(ref.name, alias=ref.alias, version=ref.version)
        schema = table_schema(bundle, name, version)
        with reporter.step(f"Scoring {table.num_rows:,} rows with {name} version {version}"):
            scores = score_table(bundle, schema, table, path=dataset, entity=entity_column)
            write_scores(scores, out)
    except TrainingError as exc:
        abort(str(exc))
    for note in (*notes, *scores.notes):
        reporter.note(note)
    p = scores.probability
    which = f"version {version}" + (f" ({ref.alias})" if ref.alias else "")
    click.echo(
        f"wrote {len(p):,} scores to {out}: {name} {which}, probability {p.min():.3f} to {p.max():.3f}, "
        f"mean {p.mean():.3f}"
    )
