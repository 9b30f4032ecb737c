"""``nba``: the root command. ``nba run`` sets everything up that is missing, then serves the API."""

from __future__ import annotations

import errno
import os
import socket
import sys
from typing import Any

import click
import uvicorn
from litestar.types import ASGIApp

from features import (
    EventStreamSettings,
    FeatureStoreError,
    OfflineSettings,
    RedisSettings,
    Registry,
    RegistryError,
    online_store_url,
)
from features.cli import features as features_commands
from features.event_cli import events as events_commands
from service.app import create_app
from service.errors import CatalogError, KeyFileError
from service.keys import KeyFile
from service.keys_cli import ensure_demo_keys
from service.keys_cli import keys as keys_commands
from service.logs import log_config
from service.settings import AuthSettings, ServiceSettings, Settings
from service.shadow_cli import report as shadow_report
from service.shadow_cli import run as shadow_run
from training import MlflowSettings, TrainingError
from training.cli import build_demo, demo, settings_from_env, train
from training.console import Reporter, abort
from training.demo import DemoConfig
from training.evaluate_cli import evaluate
from training.models_cli import models as models_commands
from training.score_cli import score
from training.shadow_cli import shadow
from training.simulate_cli import simulate


class _Root(click.Group):
    """``nba``: a feature contract (``registry.yaml``) that fails validation ends any command the way a user's mistake
    does, one line naming the file and the field and a non-zero exit, wherever the command first reads it."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RegistryError as exc:
            abort(str(exc))


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nba-copilot")
def main() -> None:
    """nba-copilot: next-best actions and predictive routing for contact centers."""


def _check_port_free(host: str, port: int) -> None:
    """Fail before the slow set-up, not after it, when the API's port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                abort(f"port {port} on {host} is already in use: stop what holds it or set NBA_PORT to a free port")
            abort(f"cannot listen on {host}:{port} ({exc.strerror}): check NBA_HOST and NBA_PORT")


@main.command("run")
@click.option("--no-demo", is_flag=True, help="Serve without building the demo world or training (your own data).")
@click.option(
    "--demo-customers",
    type=click.IntRange(1_000, 1_000_000),
    default=DemoConfig.customers,
    show_default=True,
    envvar="NBA_DEMO_CUSTOMERS",
    help="Customers of the demo world built on the first run (fewer: a quicker first run, weaker models).",
)
def run(no_demo: bool, demo_customers: int) -> None:
    """Start the online store, build the demo if missing, and serve the API.

    Listens on NBA_HOST:NBA_PORT (127.0.0.1:8000). Redis is REDIS_URL or an embedded Valkey under
    NBA_DATA_DIR (.nba); MLflow is MLFLOW_TRACKING_URI or sqlite under the data dir. With the demo and no API
    keys yet, makes one per role and shows them once (on a terminal only).
    """
    service = settings_from_env(ServiceSettings)
    auth = settings_from_env(AuthSettings)
    redis_settings = settings_from_env(RedisSettings)
    offline = settings_from_env(OfflineSettings)
    mlflow = settings_from_env(MlflowSettings)
    events = settings_from_env(EventStreamSettings)
    _check_port_free(service.host, service.port)
    registry = Registry.load()  # a bad contract stops here, before the online store, the demo or the keys are touched
    reporter = Reporter()
    try:
        with online_store_url(redis_settings, offline) as url:
            reporter.note(f"online store: {url}")
            if not no_demo:
                build_demo(DemoConfig(customers=demo_customers), reporter, registry=registry, redis_url=url)
            keys = KeyFile(auth.resolved_keys_file(offline.data_dir))
            ensure_demo_keys(keys, reporter, make=not no_demo and sys.stderr.isatty())
            # The service must start from its last-known-good models when an MLflow server is down, not after
            # MLflow's client has retried for minutes (its defaults: 7 retries, exponential backoff, 120 s
            # timeout). Values set in the environment win.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
            settings = Settings(
                service=service,
                auth=auth,
                redis=redis_settings.model_copy(update={"url": url}),
                offline=offline,
                mlflow=mlflow,
                events=events,
            )
            where = f"http://{service.host}:{service.port}  (OpenAPI: /schema/swagger)"
            # The service writes its own access log (service/logs.py: route templates, decision ids).
            logging_config = log_config(service.log_format, service.log_level)
            if service.workers == 1:
                app = create_app(settings, registry)
                reporter.note(f"serving on {where}")
                uvicorn.run(
                    app,
                    host=service.host,
                    port=service.port,
                    log_level=service.log_level,
                    log_config=logging_config,
                    access_log=False,
                )
            else:
                # Each worker is a fresh process that builds its app from the environment: hand it the store found
                # or started here (the embedded Valkey lives as long as this process).
                os.environ["REDIS_URL"] = url
                reporter.note(f"serving on {where} with {service.workers} workers")
                uvicorn.run(
                    "service.cli:app_from_env",
                    factory=True,
                    workers=service.workers,
                    host=service.host,
                    port=service.port,
                    log_level=service.log_level,
                    log_config=logging_config,
                    access_log=False,
                )
    except (FeatureStoreError, TrainingError, CatalogError, KeyFileError) as exc:
        abort(str(exc))


def app_from_env() -> ASGIApp:
    """The app one of ``nba run``'s workers serves (``NBA_WORKERS`` > 1), its settings read from the environment,
    which ``nba run`` completed with the online store's URL."""
    return create_app(
        Settings(
            service=settings_from_env(ServiceSettings),
            auth=settings_from_env(AuthSettings),
            redis=settings_from_env(RedisSettings),
            offline=settings_from_env(OfflineSettings),
            mlflow=settings_from_env(MlflowSettings),
            events=settings_from_env(EventStreamSettings),
        )
    )


main.add_command(demo)
main.add_command(train)
main.add_command(simulate)
main.add_command(evaluate)
main.add_command(models_commands)
main.add_command(score)
shadow.add_command(shadow_run)
shadow.add_command(shadow_report)
main.add_command(shadow)
main.add_command(features_commands)
main.add_command(events_commands)
main.add_command(keys_commands)
