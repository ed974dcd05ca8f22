"""kill -9 of ``facetrace notification send`` (the real CLI in a child process) at random moments and right
after a claim or a delivery, many times, against a real SMTP server on loopback: no notification is ever
received twice, one stuck in ``sending`` is marked ``unknown`` for a person (never resent on its own), a
restart delivers the rest, and the operator's resolution finishes the job with each received exactly once.
Harness: tests/faultkill.py (``FACETRACE_FAULT_REPS`` for more kills)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any

import pytest
from faultkill import SEED, Kill, Stopwatch, cli, kill_plan, run_killed
from wftest import Inbox, free_port, identify, make_world, serving

from facetrace.config import Settings
from facetrace.ops.doctor import DoctorOptions, run_doctor
from facetrace.store.accounts import User
from facetrace.workflow import Workflow

CONTACTS = 6


class SlowInbox(Inbox):
    """An inbox that takes a moment per message (a real relay does), so kills land during deliveries."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        await asyncio.sleep(0.15)
        return await super().handle_DATA(server, session, envelope)

    def per_notification(self) -> Counter[int]:
        """How many messages arrived for each notification id (its X-Facetrace-Notification header)."""
        return Counter(
            int(message_from_bytes(e.original_content, policy=default_policy)["X-Facetrace-Notification"])
            for e in self.envelopes
        )


@pytest.fixture()
def slow_smtp() -> Iterator[SlowInbox]:
    with serving(SlowInbox(port=free_port())) as inbox:
        yield inbox


def _round_of_notifications(wf: Workflow, users: dict[str, User], number: int) -> list[int]:
    """A new identification whose report has CONTACTS family contacts with e-mail; return its approved notifications."""
    contacts = [
        {"name": f"Relative {number}-{n}", "relation": "sibling", "email": f"r{number}-{n}@family.example"}
        for n in range(CONTACTS)
    ]
    world = make_world(wf, users, name=f"Missing Person {number}", contacts=contacts)
    drafted = identify(wf, users, world)["notifications"]["drafted"]
    assert len(drafted) == CONTACTS
    for nid in drafted:
        wf.notifications.approve_notification(users["maria"], nid)
    return sorted(drafted)


def _statuses(wf: Workflow, users: dict[str, User], ids: list[int]) -> dict[int, str]:
    return {nid: wf.notifications.get_notification(users["olena"], nid)["status"] for nid in ids}


def test_kill_during_notification_sending_many_times(
    wf: Workflow, users: dict[str, User], wf_settings: Settings, slow_smtp: SlowInbox
) -> None:
    rng = random.Random(SEED + 2)
    env = {
        "FACETRACE_HOME": str(wf_settings.home),
        "FACETRACE_SMTP_HOST": slow_smtp.host,
        "FACETRACE_SMTP_PORT": str(slow_smtp.port),
        "FACETRACE_SMTP_SENDER": "notify@ident.example.org",
    }
    if wf_settings.database_url:
        env["FACETRACE_DATABASE_URL"] = wf_settings.database_url
    wf.settings.smtp_port = slow_smtp.port  # the operator's own outbox runs below
    points = [f"notify.after_claim@{rng.randint(1, 3)}", f"notify.after_deliver@{rng.randint(1, 3)}"] * 2
    plan = kill_plan(rng, points, n_random=3, delays=(1.5, 4.0))
    clock = Stopwatch()
    rounds = killed = resolved = 0
    ids = _round_of_notifications(wf, users, rounds)
    stuck: set[int] = set()  # seen sending/unknown: only a person may change them

    def check(why: str) -> dict[int, str]:
        received = slow_smtp.per_notification()
        statuses = _statuses(wf, users, ids)
        for nid, status in statuses.items():
            assert received[nid] <= 1, f"{why}: notification {nid} received {received[nid]} times"
            if status == "sent":
                assert received[nid] == 1, f"{why}: notification {nid} sent but never received"
            if status in ("approved", "failed"):
                assert received[nid] == 0, f"{why}: notification {nid} received but {status}"
            if nid in stuck:
                assert status in ("sending", "unknown"), f"{why}: stuck notification {nid} became {status} by itself"
            if status in ("sending", "unknown"):
                stuck.add(nid)
        return statuses

    def finish_round() -> None:
        """A restart marks stuck messages unknown; a person settles them from the mail log; all get through."""
        nonlocal resolved
        wf.outbox.send_notifications(users["maria"], stale_after_s=0)
        statuses = check("after the restart")
        unknown = sorted(nid for nid, s in statuses.items() if s == "unknown")
        assert set(unknown) == stuck
        if unknown:
            doctor = run_doctor(wf_settings, DoctorOptions(only=("outbox",)))
            assert doctor.check("outbox").status == "warn", doctor.as_dict()
        received = slow_smtp.per_notification()
        for nid in unknown:  # the mail log (here: the inbox) says whether it went out
            went_out = received[nid] == 1
            wf.outbox.resolve_notification(
                users["maria"],
                nid,
                resolution="delivered" if went_out else "resend",
                rationale="checked the relay log for its Message-ID",
            )
            resolved += 1
        wf.outbox.send_notifications(users["maria"])
        assert set(_statuses(wf, users, ids).values()) == {"sent"}
        assert all(slow_smtp.per_notification()[nid] == 1 for nid in ids)  # each exactly once

    for kill in plan:
        outcome = run_killed(cli("notification", "send", "--as", "maria", "--json"), kill, env=env)
        why = f"seed {SEED + 2}, {kill}"
        assert outcome.killed or outcome.returncode in (0, 1), f"{why}: {outcome.stderr}"
        killed += outcome.killed
        statuses = check(why)
        if "approved" in statuses.values() or "failed" in statuses.values():
            continue  # more to send: the next run (killed or not) goes on
        finish_round()
        rounds += 1
        stuck.clear()
        ids = _round_of_notifications(wf, users, rounds)
    # The last round: a restart without a kill, then the same settlement.
    run_killed(cli("notification", "send", "--as", "maria", "--json"), Kill(), env=env)
    check("after the final run")
    finish_round()
    assert killed >= len(plan) // 2, f"only {killed} of {len(plan)} runs were killed"
    print(
        f"notifications: {killed} kills over {rounds + 1} rounds, {resolved} settled by a person, "
        f"{len(slow_smtp.envelopes)} messages, in {clock.seconds:.0f}s"
    )
