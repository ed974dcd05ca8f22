"""Helpers of the workflow tests: the loopback SMTP inbox, face images, and records built
without the face pipeline (for the rule tests)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, TypeVar

from aiosmtpd.controller import Controller

from facetrace.store.accounts import User
from facetrace.store.workflow_models import Lead
from facetrace.workflow import PhotoInput, Workflow

FACES = Path(__file__).resolve().parents[1] / "data" / "faces"


@dataclass
class Inbox:
    """What the loopback SMTP server received; ``refuse_with`` makes it refuse messages."""

    envelopes: list[Any] = field(default_factory=list)
    refuse_with: str | None = None
    host: str = "127.0.0.1"
    port: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.refuse_with:
            return self.refuse_with
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[Message]:
        return [message_from_bytes(e.original_content, policy=default_policy) for e in self.envelopes]

    def to(self, address: str) -> list[Message]:
        return [m for m, e in zip(self.messages, self.envelopes, strict=True) if address in e.rcpt_tos]


InboxT = TypeVar("InboxT", bound=Inbox)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(inbox: InboxT) -> Iterator[InboxT]:
    """Serve ``inbox`` as a real SMTP server (aiosmtpd) on its loopback host and port; yield it."""
    controller = Controller(inbox, hostname=inbox.host, port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


# -- helpers -------------------------------------------------------------------------------------
def photo(path: Path) -> PhotoInput:
    """A photo input from a file."""
    return PhotoInput(path.name, path.read_bytes())


def face_images(name: str) -> list[Path]:
    """The committed images of identity ``name`` (tests/data/faces), sorted."""
    images = sorted((FACES / name).glob("*.jpg"))
    assert images, f"no images for {name} in {FACES}"
    return images


def distractor_image(name: str) -> Path:
    """The single image of distractor identity ``name``."""
    images = sorted((FACES / "distractors" / name).glob("*.jpg"))
    assert images, f"no distractor {name}"
    return images[0]


def insert_lead(wf: Workflow, case_id: int, report_id: int, score: float = 0.95) -> int:
    """Insert a lead directly (for rule tests that need no face pipeline); return its id."""
    with wf.db.session() as session:
        lead = Lead(
            case_id=case_id,
            report_id=report_id,
            status="open",
            score=score,
            fmr=1e-4,
            fpir=1e-3,
            threshold=0.9,
            review_fpir=0.1,
            gallery_size=1,
            model_id="test",
            case_box=[0, 0, 10, 10],
            report_box=[0, 0, 10, 10],
            case_quality=80.0,
            report_quality=80.0,
        )
        session.add(lead)
        session.flush()
        return lead.id


@dataclass
class World:
    """A report with contacts, a case, and a lead between them, built without photos."""

    report: dict[str, Any]
    case: dict[str, Any]
    lead_id: int


def make_world(
    wf: Workflow,
    users: dict[str, User],
    *,
    name: str = "Olha Kovalenko",
    contacts: list[dict[str, Any]] | None = None,
    condition: str = "deceased",
) -> World:
    """Create a report (with contacts) and a case through the service, and a lead between them."""
    report = wf.reports.create_report(
        users["ivan"],
        name=name,
        reported_by="Sister, in person at the Kyiv office",
        source="family report form",
        legal_basis="consent of the family",
        consent=True,
        consent_date="2024-03-02",
        date_of_birth="1971-05-14",
        contacts=contacts
        if contacts is not None
        else [
            {"name": "Iryna Kovalenko", "relation": "sister", "email": "iryna@family.example", "language": "uk"},
        ],
    )
    case = wf.cases.create_case(
        users["ivan"],
        condition=condition,
        found_at="2024-04-11",
        found_place="Irpin, Ukraine",
        holding_organisation="Kyiv Regional Forensic Bureau",
    )
    lead_id = insert_lead(wf, case["case"]["id"], report["report"]["id"])
    return World(report=report, case=case, lead_id=lead_id)


def identify(wf: Workflow, users: dict[str, User], world: World) -> dict[str, Any]:
    """Confirm the world's lead with evidence by olena (examiner) then petro (reviewer): a passport and a
    DNA match report, so the identification is *confirmed* and the default policy notifies the family."""
    wf.reviews.add_evidence(users["olena"], world.lead_id, kind="documents", description="Passport found with the body")
    wf.reviews.add_evidence(
        users["olena"], world.lead_id, kind="dna", description="DNA match report", reference="LAB-2026-0141"
    )
    wf.reviews.review_lead(users["olena"], world.lead_id, decision="confirm", rationale="Same scar, same face")
    return wf.reviews.review_lead(
        users["petro"], world.lead_id, decision="confirm", rationale="Agree; passport matches"
    )


class DroppingSmtpServer:
    """A real SMTP server on loopback that takes a message's data and then drops the connection
    without the final reply: the sender cannot know whether the message was accepted."""

    def __init__(self) -> None:
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = int(self.sock.getsockname()[1])
        self.messages_received = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        stream = conn.makefile("rb")
        conn.sendall(b"220 dropper ESMTP\r\n")
        while True:
            line = stream.readline()
            if not line:
                return
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb in (b"EHLO", b"HELO"):
                conn.sendall(b"250 dropper\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                conn.sendall(b"250 OK\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                while stream.readline() not in (b".\r\n", b""):
                    pass
                self.messages_received += 1
                return  # drop the connection instead of replying 250
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"500 unknown\r\n")

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.sock.close()
