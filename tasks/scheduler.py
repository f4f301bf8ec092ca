"""Scheduler entry point for periodic jobs: ``taskiq scheduler tasks.scheduler:scheduler``."""

from audioverse.jobs import build_scheduler
from tasks.worker import broker

scheduler = build_scheduler(broker)
