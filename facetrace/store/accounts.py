"""Accounts: users and roles, API tokens, login sessions, login throttling, and the audit trail's table.

Passwords are Argon2id hashes; API tokens and session cookies are random strings of which only the
sha256 is stored, so a copy of the database lets nobody sign in. The functions here take the
caller's session and never commit: the caller's transaction decides.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, delete, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from facetrace.errors import ConflictError, FacetraceError, NotFoundError
from facetrace.store.models import Base, utcnow

ROLES = ("admin", "intake", "examiner", "reviewer", "auditor")
ROLE_DESCRIPTIONS = {
    "admin": "manages user accounts, roles and settings",
    "intake": "creates records and uploads photos (reports, imports)",
    "examiner": "searches the gallery and reviews candidates",
    "reviewer": "gives the second confirmation and approves notifications",
    "auditor": "reads the audit trail",
}
MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "ft_"
USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-@")

_hasher = PasswordHasher()
# Verified against when the user name is unknown, so that a failed login takes as long either way.


@cache
def _dummy_hash() -> str:
    """A hash to verify against for unknown users (same timing as a real check), made on first use
    rather than at import, which every CLI call would pay for."""
    return _hasher.hash(secrets.token_urlsafe(16))


class PasswordTooWeak(FacetraceError):
    code = "weak_password"
    status = 422


class BadCredentials(FacetraceError):
    code = "unauthorized"
    status = 401


class LoginThrottled(FacetraceError):
    """Too many failed logins for this user name or client address; ``retry_after`` in seconds."""

    code = "too_many_attempts"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def as_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (SQLite hands back naive UTC datetimes)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def token_digest(token: str) -> str:
    """Return the sha256 hex digest under which a token or session secret is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class User(Base):
    """A person who signs in. ``roles`` is a list drawn from :data:`ROLES`."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True, index=True)
    display_name: Mapped[str] = mapped_column(String(300), default="")
    password_hash: Mapped[str] = mapped_column(String(300))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def has_role(self, role: str) -> bool:
        """Return whether the user holds ``role`` (a disabled user holds none)."""
        return not self.disabled and role in (self.roles or [])

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON-ready public description (never the password hash)."""
        return {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "roles": list(self.roles or []),
            "disabled": self.disabled,
            "created_at": as_utc(self.created_at).isoformat(),
        }


class ApiToken(Base):
    """A bearer token for scripts: stored as its sha256, revocable, with an expiry."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": as_utc(self.created_at).isoformat(),
            "expires_at": as_utc(self.expires_at).isoformat(),
            "revoked": self.revoked_at is not None,
            "last_used_at": as_utc(self.last_used_at).isoformat() if self.last_used_at else None,
        }


class WebSession(Base):
    """A login session of the web UI: the cookie holds a secret whose sha256 is ``token_hash``."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class LoginThrottle(Base):
    """Failed logins counted per key (``user:NAME`` or ``addr:ADDRESS``); kept in the database so
    that a restart does not reset them."""

    __tablename__ = "login_throttle"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditEvent(Base):
    """One entry of the hash-chained audit trail (see :mod:`facetrace.store.audit`)."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(100), index=True)
    records: Mapped[list[str]] = mapped_column(JSON, default=list)
    outcome: Mapped[str] = mapped_column(String(20), default="ok")
    source: Mapped[str | None] = mapped_column(String(200), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": as_utc(self.at).isoformat(),
            "actor": self.actor,
            "action": self.action,
            "records": list(self.records or []),
            "outcome": self.outcome,
            "source": self.source,
            "detail": self.detail or {},
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


# -- users -----------------------------------------------------------------------------------
def normalise_username(username: str) -> str:
    """Return the canonical (lower-case, trimmed) user name.

    Raises:
        FacetraceError: empty, longer than 100 characters, or with characters other than
            letters, digits and ``. _ - @``.
    """
    name = username.strip().lower()
    if not name or len(name) > 100 or not set(name) <= USERNAME_CHARS:
        raise FacetraceError(f"invalid user name {username!r}: use 1-100 letters, digits, '.', '_', '-' or '@'")
    return name


def check_roles(roles: list[str]) -> list[str]:
    """Return ``roles`` deduplicated in :data:`ROLES` order. Raises FacetraceError for an unknown role."""
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise FacetraceError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
    return [r for r in ROLES if r in roles]


def hash_password(password: str) -> str:
    """Return the Argon2id hash of ``password``. Raises PasswordTooWeak when it is too short."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordTooWeak(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(user: User | None, password: str) -> bool:
    """Return whether ``password`` is the user's; with no user, spend the same time and return False."""
    try:
        ok = _hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and user is not None


def get_user(session: Session, username: str) -> User:
    """Return the user called ``username``. Raises NotFoundError."""
    user = session.execute(select(User).where(User.username == normalise_username(username))).scalar()
    if user is None:
        raise NotFoundError(f"no user {username!r}")
    return user


def create_user(session: Session, username: str, password: str, roles: list[str], display_name: str = "") -> User:
    """Add a user; return it (flushed, with its id).

    Raises:
        ConflictError: the user name is taken.
        PasswordTooWeak: the password is too short.
        FacetraceError: invalid user name or role.
    """
    name = normalise_username(username)
    if session.execute(select(User.id).where(User.username == name)).scalar() is not None:
        raise ConflictError(f"user {name!r} already exists")
    user = User(
        username=name,
        display_name=display_name.strip()[:300] or name,
        password_hash=hash_password(password),
        roles=check_roles(roles),
        disabled=False,
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, user: User, password: str) -> None:
    """Replace the user's password, end all their login sessions and revoke their API tokens (whoever
    learnt the old password may have issued one). Raises PasswordTooWeak."""
    user.password_hash = hash_password(password)
    revoke_sessions(session, user.id)
    revoke_tokens(session, user.id)


def set_roles(session: Session, user: User, roles: list[str]) -> dict[str, Any]:
    """Replace the user's roles; return the change for the audit trail (empty when none). A role taken
    away revokes the user's API tokens, which were issued under the wider authority.

    Raises:
        FacetraceError: an unknown role.
    """
    new_roles = check_roles(roles)
    if new_roles == user.roles:
        return {}
    change: dict[str, Any] = {"roles": {"before": list(user.roles), "after": new_roles}}
    if set(user.roles) - set(new_roles):
        change["tokens_revoked"] = revoke_tokens(session, user.id)
    user.roles = new_roles
    return change


def set_disabled(session: Session, user: User, disabled: bool) -> dict[str, Any]:
    """Disable or enable the account; return the change for the audit trail (empty when none).

    Disabling ends the user's login sessions and revokes their API tokens, so that enabling the
    account again revives none of them.
    """
    if disabled == user.disabled:
        return {}
    user.disabled = disabled
    change: dict[str, Any] = {"disabled": disabled}
    if disabled:
        revoke_sessions(session, user.id)
        change["tokens_revoked"] = revoke_tokens(session, user.id)
    return change


# -- API tokens ------------------------------------------------------------------------------
def create_token(session: Session, user: User, name: str, *, days: float) -> tuple[ApiToken, str]:
    """Issue an API token for ``user`` valid for ``days``; return the row and the secret (shown once)."""
    if days <= 0:
        raise FacetraceError("a token must be valid for a positive number of days")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        name=(name.strip() or "token")[:200],
        token_hash=token_digest(secret),
        expires_at=utcnow() + timedelta(days=days),
    )
    session.add(row)
    session.flush()
    return row, secret


def user_for_token(session: Session, secret: str) -> User | None:
    """Return the enabled user owning the valid (known, unrevoked, unexpired) token ``secret``, else None."""
    found = resolve_token(session, secret)
    return found[0] if found is not None else None


def resolve_token(session: Session, secret: str) -> tuple[User, ApiToken] | None:
    """Return the enabled user and the valid (known, unrevoked, unexpired) token row for ``secret``, else None."""
    row = session.execute(select(ApiToken).where(ApiToken.token_hash == token_digest(secret))).scalar()
    now = utcnow()
    if row is None or row.revoked_at is not None or as_utc(row.expires_at) <= now:
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    # Write at most every few minutes: a write per request would contend with imports on SQLite.
    if row.last_used_at is None or now - as_utc(row.last_used_at) > timedelta(minutes=5):
        row.last_used_at = now
    return user, row


def revoke_token(session: Session, token_id: int, *, owner: User | None = None) -> ApiToken:
    """Revoke token ``token_id`` (only among ``owner``'s tokens when given); return it. Raises NotFoundError."""
    row = session.get(ApiToken, token_id)
    if row is None or (owner is not None and row.user_id != owner.id):
        raise NotFoundError(f"no token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def revoke_tokens(session: Session, user_id: int) -> int:
    """Revoke every live API token of a user (disabled, password changed, a role removed); return how many."""
    rows = session.execute(select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))).scalars()
    now, count = utcnow(), 0
    for row in rows:
        row.revoked_at = now
        count += 1
    return count


def list_tokens(session: Session, user: User) -> list[ApiToken]:
    """Return the user's tokens, newest first."""
    return list(
        session.execute(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())).scalars()
    )


# -- login sessions --------------------------------------------------------------------------
def create_session(session: Session, user: User, *, hours: float, source: str | None) -> tuple[WebSession, str]:
    """Open a login session; return the row and the cookie secret (stored only as its sha256)."""
    # Forget sessions that ended over a day ago, so the table does not grow without bound.
    stale = utcnow() - timedelta(days=1)
    session.execute(
        delete(WebSession).where(WebSession.expires_at < stale).execution_options(synchronize_session=False)
    )
    secret = secrets.token_urlsafe(32)
    row = WebSession(
        user_id=user.id,
        token_hash=token_digest(secret),
        csrf_token=secrets.token_urlsafe(32),
        source=(source or "")[:100] or None,
        expires_at=utcnow() + timedelta(hours=hours),
    )
    session.add(row)
    session.flush()
    return row, secret


def resolve_session(session: Session, secret: str) -> tuple[User, WebSession] | None:
    """Return the enabled user and the live session for cookie ``secret``, else None."""
    row = session.execute(select(WebSession).where(WebSession.token_hash == token_digest(secret))).scalar()
    now = utcnow()
    if row is None or row.revoked_at is not None or as_utc(row.expires_at) <= now:
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    if now - as_utc(row.last_seen_at) > timedelta(minutes=5):
        row.last_seen_at = now
    return user, row


def csrf_matches(row: WebSession, token: str | None) -> bool:
    """Return whether ``token`` is the session's CSRF token (constant-time comparison)."""
    return bool(token) and hmac.compare_digest(row.csrf_token.encode(), (token or "").encode())


def revoke_session_secret(session: Session, secret: str) -> bool:
    """End the login session of cookie ``secret`` if it is open; return whether one was ended."""
    row = session.execute(select(WebSession).where(WebSession.token_hash == token_digest(secret))).scalar()
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def revoke_sessions(session: Session, user_id: int) -> None:
    """End every open login session of a user."""
    for row in session.execute(
        select(WebSession).where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
    ).scalars():
        row.revoked_at = utcnow()


# -- login throttling ------------------------------------------------------------------------
@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures per user name and per address are allowed within ``window_seconds``."""

    per_user: int
    per_address: int
    window_seconds: int


def _throttle_keys(username: str, address: str | None) -> list[tuple[str, str]]:
    keys = [("user", f"user:{username.strip().lower()[:150]}")]
    if address:
        keys.append(("address", f"addr:{address[:150]}"))
    return keys


def check_throttle(session: Session, username: str, address: str | None) -> None:
    """Raise LoginThrottled while the user name or the address is locked out."""
    now = utcnow()
    for kind, key in _throttle_keys(username, address):
        row = session.get(LoginThrottle, key)
        if row is not None and row.locked_until is not None and as_utc(row.locked_until) > now:
            wait = int((as_utc(row.locked_until) - now).total_seconds()) + 1
            raise LoginThrottled(
                f"too many failed logins for this {'user name' if kind == 'user' else 'address'}; "
                f"try again in {wait} seconds",
                wait,
            )


def record_login_failure(session: Session, username: str, address: str | None, policy: ThrottlePolicy) -> None:
    """Count one failed login for the user name and the address; lock either out at its limit."""
    now = utcnow()
    window = timedelta(seconds=policy.window_seconds)
    keys = _throttle_keys(username, address)
    # Forget other counts whose window and lockout are over: guessing many names must not fill the
    # table. (This attempt's own rows are reset below, so the session's copies stay valid.)
    session.execute(
        delete(LoginThrottle)
        .where(
            LoginThrottle.window_start < now - window,
            or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < now),
            LoginThrottle.key.not_in([key for _, key in keys]),
        )
        .execution_options(synchronize_session=False)
    )
    for kind, key in keys:
        limit = policy.per_user if kind == "user" else policy.per_address
        row = session.get(LoginThrottle, key)
        if row is None:
            row = LoginThrottle(key=key, failures=0, window_start=now)
            session.add(row)
        elif now - as_utc(row.window_start) > window:
            row.failures, row.window_start, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= limit:
            row.locked_until = now + window


def record_login_success(session: Session, username: str) -> None:
    """Forget the user name's failures. The address's are kept: a success on one account must
    not let an address go on guessing the passwords of others."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == _throttle_keys(username, None)[0][1]))


def authenticate(session: Session, username: str, password: str, address: str | None, policy: ThrottlePolicy) -> User:
    """Check a login; return the user. Failures are counted in ``session`` (the caller must commit
    them even though this raises).

    Raises:
        LoginThrottled: locked out after repeated failures (the password is not even checked).
        BadCredentials: unknown user, wrong password or disabled account (one message for all).
    """
    check_throttle(session, username, address)
    try:
        name = normalise_username(username)
    except FacetraceError:
        name = ""
    user = session.execute(select(User).where(User.username == name)).scalar() if name else None
    if not verify_password(user, password) or user is None or user.disabled:
        record_login_failure(session, username, address, policy)
        raise BadCredentials("wrong user name or password, or the account is disabled")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    record_login_success(session, name)
    return user


__all__ = [
    "ROLES",
    "ApiToken",
    "AuditEvent",
    "LoginThrottle",
    "User",
    "WebSession",
]
