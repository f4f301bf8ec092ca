"""Worker entry point: ``taskiq worker tasks.worker:broker`` (or ``audioverse worker``)."""

from audioverse.config import Settings
from audioverse.jobs import build_broker
from tasks.registry import register_tasks

settings = Settings.from_env()
broker = register_tasks(build_broker(settings), settings)
