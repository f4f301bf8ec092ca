"""Taskiq tasks of AudioVerse: registration on a broker, worker and scheduler entry points."""

from tasks.registry import register_tasks

__all__ = ["register_tasks"]
