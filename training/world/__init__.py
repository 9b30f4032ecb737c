"""A simulated contact center with known ground truth, to train and judge the recommender against.

Real logs never tell us what would have happened under another action, so the models are developed on a
world whose causal rules are written down here. Every outcome the simulation draws comes from the oracle
functions (``true_accept_probability``, ``true_churn_probability``, ``true_resolution_probability``), so
evaluation can compare a policy with the truth instead of with another model.

Modules:

- ``config``: the vocabulary (actions, intents, categories, costs, time units), ``WorldConfig`` and
  ``WorldSummary``.
- ``oracle``: the ground truth (churn, acceptance, the logging policy) with its table of effects.
- ``routing_oracle``: the ground truth of routing (first-contact resolution, handle time, CSAT of a contact and
  an agent) from the agents' latent skills, with its table of effects; the hidden state it reads is written
  beside the world's tables (``contact_truth``, ``agent_truth``), never into a feature.
- ``aggregate``: the feature contract's event aggregation in numpy, shared by the simulation and
  ``event_features_at``.
- ``event_features``: ``event_features_at``, the event-derived features read from a ``customer_events`` table.
- ``event_log``: the events the simulation emits, and the ``customer_events`` table built from them.
- ``contact_center``: the agents (and their latent skills), a month's contacts (intent, routing, resolution,
  transfers) and their surveys, and each agent's measured results.
- ``customer_life``: usage records, abandoned carts and consent changes.
- ``contract``: checks that the world emits what the feature registry declares; per-event lookbacks.
- ``draws`` and ``tables``: random draws and Arrow columns shared by the modules above.
- ``simulate``: the month-by-month loop that writes the parquet tables.
"""

from training.world.config import ACTIONS, EVENT_ENVELOPE, WorldConfig, WorldSummary
from training.world.event_features import event_features_at
from training.world.oracle import (
    behaviour_probabilities,
    true_accept_probability,
    true_churn_probability,
    true_expected_value,
)
from training.world.routing_oracle import true_csat, true_handle_time, true_resolution_probability
from training.world.simulate import TABLES, simulate

__all__ = [
    "ACTIONS",
    "EVENT_ENVELOPE",
    "TABLES",
    "WorldConfig",
    "WorldSummary",
    "behaviour_probabilities",
    "event_features_at",
    "simulate",
    "true_accept_probability",
    "true_churn_probability",
    "true_csat",
    "true_expected_value",
    "true_handle_time",
    "true_resolution_probability",
]
