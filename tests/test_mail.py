"""Emails render as text + HTML and reach a real SMTP server or an `.eml` file."""

from __future__ import annotations

from email import message_from_bytes
from pathlib import Path

from audioverse.config import Settings
from audioverse.mail import deliver, render_email
from tests.services import SmtpServer, email_text


def _verification() -> object:
    return render_email(
        "verify_email",
        to="reader@example.com",
        subject="Confirm your email address",
        username="<reader>",
        link="https://app.example/verify-email?token=abc",
        hours=48,
    )


async def test_smtp_delivery(smtp_server: SmtpServer, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, email_backend="smtp", smtp_host=smtp_server.host, smtp_port=smtp_server.port)
    await deliver(settings, _verification())  # type: ignore[arg-type]
    [received] = smtp_server.messages
    assert received["To"] == "reader@example.com"
    assert received["From"] == settings.email_from
    assert "token=abc" in email_text(received)
    html = next(part for part in received.walk() if part.get_content_type() == "text/html")
    # HTML is escaped; the plain part carries the name as typed.
    assert "&lt;reader&gt;" in html.get_payload(decode=True).decode()
    assert "<reader>" in email_text(received)


async def test_file_delivery_writes_one_eml(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    await deliver(settings, _verification())  # type: ignore[arg-type]
    [path] = list(settings.mail_dir.glob("*.eml"))
    message = message_from_bytes(path.read_bytes())
    assert message["Subject"] == "Confirm your email address"
    assert not list(settings.mail_dir.glob(".*partial"))
