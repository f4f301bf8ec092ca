"""Scheduler entry point for periodic jobs: ``taskiq scheduler tasks.scheduler:scheduler``."""

from taskiq import TaskiqScheduler
from taskiq.schedule_sources import LabelScheduleSource

from tasks.worker import broker

scheduler = TaskiqScheduler(broker=broker, sources=[LabelScheduleSource(broker)])
