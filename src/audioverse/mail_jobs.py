"""The email task: delivers one rendered message with the configured backend."""

from __future__ import annotations

from typing import Any

import msgspec

from audioverse.mail import EMAIL_TASK, OutgoingEmail, deliver
from audioverse.task_runtime import RETRY, Resources, TaskSpec


async def send_email(message: dict[str, Any], resources: Resources) -> None:
    """Deliver ``message`` (an :class:`OutgoingEmail` as plain data); a failure is retried by raising."""
    await deliver(resources.settings, msgspec.convert(message, OutgoingEmail))


TASKS = [TaskSpec(EMAIL_TASK, send_email, RETRY)]
