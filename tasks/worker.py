"""Worker entry point: ``taskiq worker tasks.worker:broker`` (or ``audioverse worker``)."""

from audioverse.config import Settings
from audioverse.jobs import build_broker
from audioverse.logs import configure_logging
from audioverse.task_registry import register_tasks

settings = Settings.from_env()
# Each worker process logs as the app does; a forked one would otherwise inherit a queue handler whose thread is gone.
configure_logging(settings)
broker = register_tasks(build_broker(settings), settings)
