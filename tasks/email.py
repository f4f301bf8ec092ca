"""The email task: delivers one rendered message with the configured backend."""

from __future__ import annotations

from typing import Any

import msgspec

from audioverse.mail import OutgoingEmail, deliver
from tasks.runtime import Resources


async def send_email(message: dict[str, Any], resources: Resources) -> None:
    """Deliver ``message`` (an :class:`OutgoingEmail` as plain data); a failure is retried by raising."""
    await deliver(resources.settings, msgspec.convert(message, OutgoingEmail))
