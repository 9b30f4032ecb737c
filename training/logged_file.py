"""A file of logged decisions (CSV or parquet), read into what the off-policy estimators take.

The file holds one row per decision: the action the logging policy took, the probability with which it took it,
the reward that followed, and the target policy in one of two forms:

- a column with the target policy's probability of the logged action, computed elsewhere (IPS and SNIPS);
- the registered models of the service's next-best-action policy, scored on the file's context columns
  (IPS, SNIPS and doubly robust, the models' expected rewards serving as the reward model).

"The policy of a model" is the policy of two: the service ranks actions by expected gain, which needs the churn
model (P(churn | action)) and the propensity model (P(accept | action)) together (:mod:`training.action_value`).
The target is therefore :func:`~training.policy_evaluation.score_policy` on a churn and a propensity version,
each named ``NAME@ALIAS`` or ``NAME/VERSION``: ``nba evaluate``'s champion and challenger policies, with the
simulated world's action costs and sales offers only to customers who consent to marketing; the catalog's other
eligibility rules, channels and contact policies belong to the service and are not applied. That policy is
deterministic: probability 1 on its choice. Its context columns are the feature contract's customer model
inputs, by name, as they stood at each decision (the offline store's point-in-time join of the log gives them).

CSV cells arrive as text and are read as the user's tables are (:mod:`training.table_schema`): plain decimal
numbers, blank or NA for missing, yes/no or true/false words for flags. Text where a number belongs stops the
run with its column and row, as does a propensity outside (0, 1] (:class:`~training.off_policy.LoggedDecisions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from features import EntitySchema
from training.bundle import ModelBundle
from training.dataset import read_table
from training.errors import OffPolicyError
from training.off_policy import LoggedDecisions, one_hot, per_action
from training.policy_evaluation import points_of, score_policy
from training.table_schema import ColumnKind, FeatureColumn, as_text
from training.world.config import ACTIONS


@dataclass(frozen=True)
class LogColumns:
    """Which of the file's columns hold what, as the user named them."""

    action: str
    propensity: str
    reward: str
    target: str | None = None
    """The target policy's probability of the logged action, when the target is given as a column."""


@dataclass(frozen=True)
class LoggedFile:
    """A logged file as read: the table and the notes on how it was read (delimiter, encoding)."""

    path: Path
    table: pa.Table
    notes: tuple[str, ...]

    @classmethod
    def read(cls, path: Path) -> LoggedFile:
        """Read ``path`` (.csv or .parquet) with the reader training uses for a user's table."""
        table, notes = read_table(path)
        return cls(path, table, tuple(notes))

    def __len__(self) -> int:
        return self.table.num_rows

    def column(self, name: str, option: str) -> pa.ChunkedArray:
        """The column ``name`` that ``option`` named, or an error listing the columns there are."""
        if name not in self.table.column_names:
            raise OffPolicyError(
                f"{option} {name!r}: {self.path.name} has no such column; columns: {', '.join(self.table.column_names)}"
            )
        return self.table.column(name)

    def numbers(self, name: str, option: str) -> np.ndarray:
        """The column as float64 (NaN where blank); text that is not a number stops with its row."""
        column = self.column(name, option)
        reader = FeatureColumn(name, "number")
        values = reader.encode(column)
        unread = np.flatnonzero(reader.unread(column, values))
        if len(unread):
            cell = as_text(column)[int(unread[0])].as_py()
            raise OffPolicyError(
                f"{option} {name!r}: row {unread[0] + 1} holds {cell!r}, not a number "
                f"({len(unread):,} such row(s) in {self.path.name})"
            )
        return values

    def actions(self, name: str, option: str, known: tuple[str, ...]) -> np.ndarray:
        """The logged action of each row as its index in ``known``; an action outside it stops the run."""
        text = as_text(self.column(name, option))
        values = np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
        index = {action: i for i, action in enumerate(known)}
        codes = np.array([index.get(v, -1) for v in values], dtype=np.intp)
        bad = np.flatnonzero(codes < 0)
        if len(bad):
            unknown = sorted({str(values[i]) for i in bad})
            raise OffPolicyError(
                f"{option} {name!r}: {len(bad):,} row(s) with an action the target policy does not know, the first at "
                f"row {bad[0] + 1}: {', '.join(map(repr, unknown[:5]))}; the policy's actions: {', '.join(known)}"
            )
        return codes

    def contexts(self, schema: EntitySchema) -> pa.Table:
        """The feature contract's model inputs, typed as the offline store types them, for the models to score.

        Parquet columns are taken as they are; CSV text is read as a number, a yes/no flag or a category by the
        feature's declared type. A missing column stops the run naming every one that is missing."""
        missing = [name for name in schema.model_names if name not in self.table.column_names]
        if missing:
            raise OffPolicyError(
                f"--model: {self.path.name} lacks the context column(s) the models read: {', '.join(missing)} "
                "(the customer's features at each decision, named as in the feature registry)"
            )
        typed: dict[str, pa.Array | pa.ChunkedArray] = {}
        for feature in schema.model_features:
            column = self.table.column(feature.name)
            text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            if not text or feature.dtype == "category":
                typed[feature.name] = column
                continue
            kind: ColumnKind = "boolean" if feature.dtype == "bool" else "number"
            reader = FeatureColumn(feature.name, kind)
            values = reader.encode(column)
            unread = np.flatnonzero(reader.unread(column, values))
            if len(unread):
                what = "a yes/no or true/false word" if kind == "boolean" else "a number"
                raise OffPolicyError(
                    f"--model: context column {feature.name!r}, row {unread[0] + 1}: "
                    f"{as_text(column)[int(unread[0])].as_py()!r} is not {what}"
                )
            blank = np.isnan(values)
            typed[feature.name] = (
                pa.array(values == 1.0, pa.bool_(), mask=blank)
                if kind == "boolean"
                else pa.array(values, pa.float64(), mask=blank)
            )
        return pa.table(typed)


def logged_decisions(log: LoggedFile, columns: LogColumns) -> LoggedDecisions:
    """The decisions with the target given as a column of probabilities (no reward model: no DR)."""
    if columns.target is None:
        raise ValueError("columns.target is None: use policy_decisions for a target policy of models")
    log.column(columns.action, "--action-column")  # not read by IPS or SNIPS, but a file without it is not a log
    return LoggedDecisions(
        reward=log.numbers(columns.reward, "--reward-column"),
        propensity=log.numbers(columns.propensity, "--propensity-column"),
        target=log.numbers(columns.target, "--target-propensity-column"),
        columns={
            "reward": columns.reward,
            "propensity": columns.propensity,
            "target": columns.target,
        },
    )


def policy_decisions(
    log: LoggedFile, columns: LogColumns, schema: EntitySchema, churn: ModelBundle, propensity: ModelBundle
) -> LoggedDecisions:
    """The decisions with the models' policy as the target and their expected rewards as the reward model."""
    reward = log.numbers(columns.reward, "--reward-column")
    behaviour = log.numbers(columns.propensity, "--propensity-column")
    logged = log.actions(columns.action, "--action-column", ACTIONS)
    policy = score_policy(points_of(log.contexts(schema), schema), churn, propensity)
    target, model_logged, model_target = per_action(
        logged, one_hot(policy.choice, len(ACTIONS)), policy.expected_reward
    )
    return LoggedDecisions(
        reward=reward,
        propensity=behaviour,
        target=target,
        model_logged=model_logged,
        model_target=model_target,
        columns={"reward": columns.reward, "propensity": columns.propensity},
    )
