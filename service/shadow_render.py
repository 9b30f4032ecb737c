"""The shadow report as a person reads it: terminal tables, JSON, a self-contained HTML page, and its plots."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: a worker or a CI box has no display
import matplotlib.pyplot as plt
from rich.console import Console, Group
from rich.table import Table

from features.decision_log_keys import Kind
from service.shadow import ShadowResult
from service.shadow_report import EndpointReport, K


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def tables(reports: Sequence[EndpointReport]) -> Group:
    """The report as rich tables, one block per endpoint."""
    parts: list[object] = []
    for r in reports:
        s = r.similarity
        head = Table(title=f"{r.kind}: champion vs challenger on {s.decisions:,} decisions", show_edge=False)
        head.add_column("figure")
        head.add_column("value", justify="right")
        rows = [
            ("top choice agreement", _f(s.top_agreement)),
            (f"overlap of the top {K}", _f(s.overlap_at_k)),
            ("rank correlation (Spearman, mean)", _f(s.rank_correlation)),
            ("champion top score p10 / p50 / p90", _q(s.champion_top_score)),
            ("challenger top score p10 / p50 / p90", _q(s.challenger_top_score)),
            (
                "challenger latency p50 / p99 (µs)",
                f"{_f(s.challenger_latency_us.get('p50'), 0)} / {_f(s.challenger_latency_us.get('p99'), 0)}",
            ),
            ("decisions with a known reward", f"{r.outcomes:,}"),
            ("decisions awaiting their outcome", f"{r.awaiting:,}"),
            ("value of what was served (on policy)", _f(r.logged_value, 4)),
            ("exploration's cost (champion's expected reward given up)", _f(r.exploration_cost, 4)),
        ]
        if r.kind == "recommend":
            offers = f"offers alone: value − cost if accepted, on policy ({r.acceptance_outcomes:,} decisions)"
            rows.append((offers, _f(r.acceptance_value, 4)))
        for name, value in rows:
            head.add_row(name, value)
        parts.append(head)
        known = f"known for {r.outcomes:,} of {r.outcomes + r.awaiting:,} decisions"
        parts.append(f"{r.kind}: the values and the verdict rest on the reward {r.reward}, {known}")
        if r.kind == "recommend":
            parts.append("  (offers alone says whether offers land; the verdict does not read it)")
        if r.champion:
            values = Table(title=f"{r.kind}: value per decision — reward: {r.reward}", show_edge=False)
            for column in (
                "policy",
                "estimator",
                "value",
                "95% interval",
                "decisions",
                "eff. sample size",
                "max weight",
            ):
                values.add_column(column, justify="left" if column in ("policy", "estimator") else "right")
            for policy, estimates in (("champion", r.champion), ("challenger", r.challenger)):
                for e in estimates:
                    values.add_row(
                        policy,
                        e.estimator,
                        _f(e.value, 4),
                        f"[{_f(e.low, 4)}, {_f(e.high, 4)}]",
                        f"{e.decisions:,}",
                        _f(e.effective_sample_size, 1),
                        _f(e.max_weight, 1),
                    )
            for d in r.difference:
                interval = f"[{_f(d.low, 4)}, {_f(d.high, 4)}]"
                values.add_row(
                    "challenger − champion", d.estimator, _f(d.value, 4), interval, f"{d.decisions:,}", "", ""
                )
            parts.append(values)
        parts.append(f"[bold]{r.kind}: {r.verdict.decision.upper()}[/bold] — {r.verdict.rule}")
        if r.models:
            parts.append(f"  champion {_models(r.models.get('champion', {}))}; "
                         f"challenger {_models(r.models.get('challenger', {}))}")  # fmt: skip
    return Group(*parts)  # type: ignore[arg-type]


def _q(q: Mapping[str, float]) -> str:
    return " / ".join(_f(q.get(k), 3) for k in ("p10", "p50", "p90")) if q else "—"


def _models(models: Mapping[str, str]) -> str:
    return ", ".join(f"{name} v{version}" for name, version in sorted(models.items())) or "—"


def as_json(reports: Sequence[EndpointReport]) -> str:
    """The report as one JSON object keyed by endpoint (NaN written as null)."""

    def clean(value: object) -> object:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean({r.kind: r.as_dict() for r in reports}), indent=2)


def plots(reports: Sequence[EndpointReport], results: Mapping[Kind, Sequence[ShadowResult]], out: Path) -> list[Path]:
    """Per endpoint: the two models' top scores, and their value estimates with intervals; the PNG files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for r in reports:
        rows = results.get(r.kind, [])
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for name, scores in (
            ("champion", [x.champion_scores[0] for x in rows if x.champion_scores]),
            ("challenger", [x.challenger_scores[0] for x in rows if x.challenger_scores]),
        ):
            if scores:
                left.hist(scores, bins=40, alpha=0.55, label=name)
        left.set_title(f"{r.kind}: top score of each decision")
        left.legend()
        labels, values, lows, highs = [], [], [], []
        for policy, estimates in (("champion", r.champion), ("challenger", r.challenger)):
            for e in estimates:
                labels.append(f"{policy}\n{e.estimator}")
                values.append(e.value)
                lows.append(e.value - e.low)
                highs.append(e.high - e.value)
        if labels:
            right.errorbar(range(len(labels)), values, yerr=[lows, highs], fmt="o", capsize=4)
            right.set_xticks(range(len(labels)), labels, fontsize=8)
        right.set_title(f"{r.kind}: value per decision, 95% intervals")
        fig.tight_layout()
        path = out / f"{r.kind}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def as_html(reports: Sequence[EndpointReport], pictures: Sequence[Path]) -> str:
    """A self-contained page: the terminal tables as text and the plots inline."""
    console = Console(record=True, width=150, file=io.StringIO())
    console.print(tables(reports))
    text = html.escape(console.export_text())
    images = "".join(
        f'<img alt="{html.escape(p.stem)}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        for p in pictures
    )
    return (
        "<!doctype html><meta charset=utf-8><title>nba-copilot shadow report</title>"
        "<style>body{font-family:sans-serif;margin:2em}pre{font-size:13px}img{max-width:100%}</style>"
        f"<h1>Shadow report</h1><pre>{text}</pre>{images}"
    )
