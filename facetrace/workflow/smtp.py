"""One SMTP delivery attempt and its outcome, as the outbox (:mod:`facetrace.workflow.outbox`) needs
to know it: accepted, refused, a retryable error, or unknown (the connection broke during DATA)."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import parseaddr

from facetrace.config import Settings


@dataclass(frozen=True)
class Delivery:
    """The outcome of one SMTP attempt: accepted, refused, error (retryable) or unknown."""

    outcome: str
    code: int | None
    detail: str


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _refusal(code: int, reply: bytes | str, stage: str) -> Delivery:
    # 5xx is permanent, 4xx transient; either way the server did not take the message.
    outcome = "refused" if 500 <= code < 600 else "error"
    return Delivery(outcome, code, f"{stage}: {code} {_text(reply)}".strip())


def deliver(settings: Settings, message: EmailMessage, recipient: str) -> Delivery:
    """Send ``message`` to ``recipient`` through the configured SMTP server; never raises.

    Returns ``accepted`` only on a 250 reply to the message data; ``unknown`` when the connection
    broke while the data was being transferred (the server may have it); ``refused`` on a 5xx and
    ``error`` on anything else before the data (connection, TLS, login, 4xx).
    """
    sender = parseaddr(settings.smtp_sender)[1] or settings.smtp_sender
    context = ssl.create_default_context()
    try:
        if settings.smtp_tls == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout)
    except (OSError, smtplib.SMTPException) as exc:
        return Delivery("error", None, f"cannot connect to {settings.smtp_host}:{settings.smtp_port}: {exc}")
    try:
        code, reply = smtp.ehlo()
        if code != 250:
            code, reply = smtp.helo()
            if code != 250:
                return _refusal(code, reply, "HELO")
        if settings.smtp_tls == "starttls":
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        code, reply = smtp.mail(sender)
        if code != 250:
            return _refusal(code, reply, "sender")
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            return _refusal(code, reply, "recipient")
        payload = message.as_bytes(policy=SMTP_POLICY)
        try:
            code, reply = smtp.data(payload)
        except smtplib.SMTPDataError as exc:  # DATA itself was refused: no data went out
            return _refusal(exc.smtp_code, exc.smtp_error, "data")
        except (OSError, smtplib.SMTPException) as exc:
            return Delivery("unknown", None, f"connection lost while transferring the message: {exc}")
        if code == 250:
            return Delivery("accepted", code, _text(reply))
        return _refusal(code, reply, "message")
    except smtplib.SMTPResponseException as exc:
        return _refusal(exc.smtp_code, exc.smtp_error, "SMTP")
    except (OSError, smtplib.SMTPException, UnicodeError) as exc:
        return Delivery("error", None, f"{type(exc).__name__}: {exc}")
    finally:
        try:
            smtp.quit()
        except Exception:  # the outcome is decided; a failing QUIT changes nothing
            smtp.close()
