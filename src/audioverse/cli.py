"""The ``audioverse`` command: Litestar's CLI bound to our app, plus our own commands."""

from __future__ import annotations

import asyncio
import os

import click
from litestar.cli.main import litestar_group
from litestar.plugins import CLIPlugin
from taskiq.cli.scheduler.args import SchedulerArgs
from taskiq.cli.scheduler.run import run_scheduler
from taskiq.cli.worker.args import WorkerArgs
from taskiq.cli.worker.run import run_worker

APP_PATH = "audioverse.app:create_app"


@click.command(name="worker", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def worker_command(ctx: click.Context) -> None:
    """Run Taskiq workers for the production profile (extra arguments go to ``taskiq worker``)."""
    raise SystemExit(run_worker(WorkerArgs.from_cli(["tasks.worker:broker", *ctx.args])))


@click.command(name="scheduler", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def scheduler_command(ctx: click.Context) -> None:
    """Run the Taskiq scheduler that sends the periodic jobs (one per deployment)."""
    asyncio.run(run_scheduler(SchedulerArgs.from_cli(["tasks.scheduler:scheduler", *ctx.args])))


class AudioverseCLIPlugin(CLIPlugin):
    """Adds AudioVerse's commands to the Litestar command group."""

    def on_cli_init(self, cli: click.Group) -> None:
        cli.add_command(worker_command)
        cli.add_command(scheduler_command)


def main() -> None:
    """Entry point of the ``audioverse`` console script."""
    os.environ.setdefault("LITESTAR_APP", APP_PATH)
    litestar_group()
