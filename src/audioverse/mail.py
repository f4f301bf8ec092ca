"""Outgoing email: rendered from templates, delivered as ``.eml`` files or by SMTP."""

from __future__ import annotations

import email.policy
import smtplib
import time
from email.message import EmailMessage
from email.utils import make_msgid
from functools import cache
from typing import Any

import anyio
import msgspec
from jinja2 import Environment, PackageLoader, select_autoescape

from audioverse.config import Settings

EMAIL_TASK = "email.send"
"""The job that delivers one message: ``defer(session, EMAIL_TASK, msgspec.to_builtins(email))``."""
SMTP_OK = 250


class EmailUnavailable(Exception):
    """The SMTP server cannot take mail; the message says why, for ``/api/ready``."""


class OutgoingEmail(msgspec.Struct, frozen=True):
    """One message, as the email task receives it."""

    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """More header fields, such as ``List-Unsubscribe``."""


@cache
def _templates() -> Environment:
    return Environment(
        loader=PackageLoader("audioverse", "templates/email"),
        autoescape=select_autoescape(["html"]),
        keep_trailing_newline=True,
    )


def render_email(
    template: str, *, to: str, subject: str, headers: dict[str, str] | None = None, **context: Any
) -> OutgoingEmail:
    """Render ``<template>.txt`` and ``<template>.html`` into one message."""
    environment = _templates()
    return OutgoingEmail(
        to=to,
        subject=subject,
        text=environment.get_template(f"{template}.txt").render(subject=subject, **context),
        html=environment.get_template(f"{template}.html").render(subject=subject, **context),
        headers=headers or {},
    )


# Header lines up to RFC 5322's limit: the default 78 would encode a List-Unsubscribe URL (which has no
# space to fold at) as RFC 2047 words, which no mail client reads as a URL.
HEADER_POLICY = email.policy.default.clone(max_line_length=998)


def build_message(settings: Settings, email: OutgoingEmail) -> EmailMessage:
    message = EmailMessage(policy=HEADER_POLICY)
    message["From"] = settings.email_from
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Message-ID"] = make_msgid(domain="audioverse")
    for name, value in email.headers.items():
        message[name] = value
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


async def deliver(settings: Settings, email: OutgoingEmail) -> None:
    """Send ``email`` with the configured backend (file or SMTP)."""
    message = build_message(settings, email)
    if settings.email_backend == "file":
        await anyio.to_thread.run_sync(_write_eml, settings, message)
    else:
        await anyio.to_thread.run_sync(_send_smtp, settings, message)


def _write_eml(settings: Settings, message: EmailMessage) -> None:
    settings.mail_dir.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns()}-{message['Message-ID'].strip('<>').split('@')[0]}.eml"
    partial = settings.mail_dir / f".{name}.partial"
    partial.write_bytes(message.as_bytes())
    # Readers see a whole message or none.
    partial.rename(settings.mail_dir / name)


def _send_smtp(settings: Settings, message: EmailMessage) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username and settings.smtp_password:
            smtp.login(settings.smtp_username, settings.smtp_password)
        smtp.send_message(message)


async def check_smtp(settings: Settings, timeout_seconds: float) -> None:
    """Connect, EHLO and NOOP to the SMTP server within ``timeout_seconds``; raise ``EmailUnavailable`` if it fails."""
    try:
        # Abandoned on cancel: smtplib's own timeout ends the thread soon after.
        await anyio.to_thread.run_sync(_greet_smtp, settings, timeout_seconds, abandon_on_cancel=True)
    except (OSError, smtplib.SMTPException) as exc:
        raise EmailUnavailable(f"the SMTP server does not answer ({type(exc).__name__})") from exc


def _greet_smtp(settings: Settings, timeout_seconds: float) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout_seconds) as smtp:
        smtp.ehlo()
        status, reply = smtp.noop()
        if status != SMTP_OK:
            raise smtplib.SMTPResponseException(status, reply)
