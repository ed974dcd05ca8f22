"""Storage of accounts, the audit trail and jobs, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import delete, text, update

from facetrace.errors import ConflictError, FacetraceError
from facetrace.store.accounts import (
    ApiToken,
    AuditEvent,
    BadCredentials,
    LoginThrottle,
    LoginThrottled,
    PasswordTooWeak,
    ThrottlePolicy,
    authenticate,
    check_throttle,
    create_session,
    create_token,
    create_user,
    record_login_failure,
    resolve_session,
    revoke_token,
    set_password,
    user_for_token,
)
from facetrace.store.audit import append_event, list_events, verify_chain
from facetrace.store.db import Database
from facetrace.store.models import utcnow

POLICY = ThrottlePolicy(per_user=3, per_address=5, window_seconds=600)


@pytest.fixture()
def db(database_url: str) -> Database:
    database = Database(database_url)
    yield database  # type: ignore[misc]
    database.dispose()


def test_migrations_reach_head(db: Database) -> None:
    assert db.current_revision() == db.head_revision()
    assert db.current_revision() is not None and db.current_revision() >= "0002"


def test_users_passwords_and_roles(db: Database) -> None:
    with db.session() as s:
        user = create_user(s, " Alice ", "a long enough password", ["reviewer", "examiner", "examiner"])
    assert user.username == "alice" and user.roles == ["examiner", "reviewer"]
    assert user.password_hash.startswith("$argon2id$") and "a long enough" not in user.password_hash
    assert user.has_role("examiner") and not user.has_role("admin")
    with db.session() as s, pytest.raises(ConflictError):
        create_user(s, "ALICE", "another long password", [])
    with db.session() as s, pytest.raises(PasswordTooWeak):
        create_user(s, "bob", "short", [])
    with db.session() as s, pytest.raises(FacetraceError, match="unknown role"):
        create_user(s, "bob", "a long enough password", ["superuser"])
    with db.session() as s, pytest.raises(FacetraceError, match="invalid user name"):
        create_user(s, "bob smith", "a long enough password", [])


def test_tokens_are_hashed_revocable_and_expire(db: Database) -> None:
    with db.session() as s:
        user = create_user(s, "carol", "a long enough password", ["auditor"])
        row, secret = create_token(s, user, "script", days=1)
    with db.sessions() as s:
        stored = s.get(ApiToken, row.id)
        assert stored is not None and secret not in stored.token_hash and len(stored.token_hash) == 64
    with db.session() as s:
        found = user_for_token(s, secret)
        assert found is not None and found.username == "carol"
        assert user_for_token(s, secret + "x") is None
    with db.session() as s:
        s.execute(update(ApiToken).where(ApiToken.id == row.id).values(expires_at=utcnow() - timedelta(seconds=1)))
    with db.session() as s:
        assert user_for_token(s, secret) is None  # expired
    with db.session() as s:
        _, second = create_token(s, user, "other", days=1)
    with db.session() as s:
        revoke_token(s, 2)
    with db.session() as s:
        assert user_for_token(s, second) is None  # revoked


def test_sessions_end_on_password_change(db: Database) -> None:
    with db.session() as s:
        user = create_user(s, "dave", "a long enough password", ["intake"])
        _, secret = create_session(s, user, hours=1, source="127.0.0.1")
    with db.session() as s:
        assert resolve_session(s, secret) is not None
        set_password(s, s.merge(user), "a new long password")
    with db.session() as s:
        assert resolve_session(s, secret) is None


def test_login_throttling_persists_across_restarts(db: Database, database_url: str) -> None:
    with db.session() as s:
        create_user(s, "erin", "a long enough password", ["examiner"])
    for _ in range(POLICY.per_user):
        with db.sessions() as s:
            with pytest.raises(BadCredentials):
                authenticate(s, "erin", "wrong password!", "10.0.0.1", POLICY)
            s.commit()
    db.dispose()
    reopened = Database(database_url)  # a restarted server
    try:
        with reopened.sessions() as s, pytest.raises(LoginThrottled) as caught:
            authenticate(s, "erin", "a long enough password", "10.0.0.2", POLICY)  # even the right password
        assert caught.value.retry_after > 0 and caught.value.status == 429
    finally:
        reopened.dispose()


def test_address_throttle_covers_every_user_name(db: Database) -> None:
    for number in range(POLICY.per_address):
        with db.sessions() as s:
            with pytest.raises(BadCredentials):
                authenticate(s, f"guess{number}", "wrong password!", "10.9.9.9", POLICY)
            s.commit()
    with db.sessions() as s, pytest.raises(LoginThrottled, match="address"):
        authenticate(s, "someone-else", "whatever password", "10.9.9.9", POLICY)


def test_throttle_windows_expire_and_old_counts_are_purged(db: Database) -> None:
    old = utcnow() - timedelta(hours=2)
    with db.session() as s:
        s.add(LoginThrottle(key="user:ghost", failures=9, window_start=old, locked_until=old))
        s.add(LoginThrottle(key="user:erin", failures=2, window_start=old))
    with db.session() as s:
        check_throttle(s, "erin", "10.0.0.1")  # loads erin's row into the session first
        record_login_failure(s, "erin", "10.0.0.1", POLICY)
    with db.sessions() as s:
        assert s.get(LoginThrottle, "user:ghost") is None
        row = s.get(LoginThrottle, "user:erin")
        assert row is not None and row.failures == 1 and row.locked_until is None  # a new window
        address = s.get(LoginThrottle, "addr:10.0.0.1")
        assert address is not None and address.failures == 1


def _append(db: Database, n: int) -> None:
    with db.session() as s:
        for i in range(n):
            append_event(s, actor="u", action="test.event", records=[f"person:{i}"], detail={"i": i, "x": 0.1})


def test_audit_chain_intact_and_filterable(db: Database) -> None:
    _append(db, 5)
    with db.sessions() as s:
        assert verify_chain(s) == []
        rows, total = list_events(s, record="person:3")
        assert total == 1 and rows[0].records == ["person:3"]
        rows, total = list_events(s, action="test.", limit=2)
        assert total == 5 and len(rows) == 2 and rows[0].id > rows[1].id  # newest first


def test_audit_detects_an_edited_event(db: Database) -> None:
    _append(db, 4)
    with db.session() as s:
        s.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE id = 2"))
    with db.sessions() as s:
        problems = verify_chain(s)
    assert len(problems) == 1 and problems[0].startswith("event #2:") and "edited" in problems[0]


def test_audit_detects_an_edit_with_a_recomputed_hash(db: Database) -> None:
    from facetrace.store.audit import event_hash

    _append(db, 4)
    with db.session() as s:
        event = s.get(AuditEvent, 2)
        assert event is not None
        event.detail = {"i": 99}
        event.hash = event_hash(event)  # a careful forger: the event itself looks right
    with db.sessions() as s:
        problems = verify_chain(s)
    assert any(p.startswith("event #3:") and "link" in p for p in problems), problems


def test_audit_detects_deleted_events(db: Database) -> None:
    _append(db, 5)
    with db.session() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.id == 3))
    with db.sessions() as s:
        problems = verify_chain(s)
    assert any(p.startswith("event #4:") and "after event #2" in p for p in problems), problems


def test_audit_detects_deleted_newest_event(db: Database) -> None:
    _append(db, 3)
    with db.session() as s:
        s.execute(text("DELETE FROM audit_events WHERE id = 3"))
    with db.sessions() as s:
        problems = verify_chain(s)
    assert len(problems) == 1 and "up to #3" in problems[0], problems


def test_concurrent_appends_keep_one_chain(db: Database) -> None:
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(10):
                _append(db, 1)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with db.sessions() as s:
        assert verify_chain(s) == []
        assert list_events(s)[1] == 40
