"""Storage tasks: remove objects whose rows a committed write deleted or replaced."""

from __future__ import annotations

from audioverse.storage import DELETE_TASK
from audioverse.task_runtime import Resources, TaskSpec


async def delete_objects(keys: list[str], resources: Resources) -> int:
    """Delete ``keys`` from storage; a key already gone counts as deleted, so a second run is harmless."""
    for key in keys:
        await resources.storage.delete(key)
    return len(keys)


TASKS = [TaskSpec(DELETE_TASK, delete_objects)]
