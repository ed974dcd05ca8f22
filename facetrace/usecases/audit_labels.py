"""Audit actions in plain words, for people who read the trail without knowing its action names:
``report.photos_add`` reads "photos added". The web pages and the CSV exports show these labels
beside (never instead of) the action itself, which stays the auditor's exact key."""

from __future__ import annotations

ACTION_LABELS = {
    # Reports, contacts and cases.
    "report.create": "report registered",
    "report.update": "report changed",
    "report.photos_add": "photos added",
    "report.merge": "reports merged",
    "report.match": "report searched again",
    "report.view": "report viewed",
    "report.list": "reports listed",
    "report.list_export": "report list exported",
    "report.duplicate_flag": "possible duplicate flagged",
    "report.erase": "report erased",
    "contact.create": "contact added",
    "contact.update": "contact changed",
    "case.create": "case opened",
    "case.update": "case changed",
    "case.photos_add": "photos added",
    "case.match": "case searched again",
    "case.view": "case viewed",
    "case.list": "cases listed",
    "case.list_export": "case list exported",
    "case.export": "case file exported",
    "case.erase": "case erased",
    "duplicate.dismiss": "duplicate flag dismissed",
    "duplicate.list": "duplicate flags listed",
    "match.all": "all records searched again",
    # Leads, reviews, identifications and notifications.
    "lead.create": "lead found",
    "lead.update": "lead score raised",
    "lead.review": "lead reviewed",
    "lead.view": "lead viewed",
    "lead.list": "leads listed",
    "evidence.add": "evidence recorded",
    "identification.confirm": "identification confirmed",
    "identification.withdraw": "identification withdrawn",
    "identification.view": "identification viewed",
    "identification.list": "identifications listed",
    "notification.draft": "notification drafted",
    "notification.approve": "notification approved",
    "notification.cancel": "notification cancelled",
    "notification.send": "notification handed to the mail server",
    "notification.deliver": "notification delivered",
    "notification.delivery_unknown": "delivery outcome unknown",
    "notification.resolve": "delivery resolved",
    "notification.view": "notification viewed",
    "notification.list": "notifications listed",
    # Photos, the gallery and searches.
    "media.view": "photo viewed",
    "media.altered": "stored photo found altered",
    "media.missing": "stored photo found missing",
    "image.export": "photo downloaded",
    "person.enroll": "person enrolled",
    "person.update": "person changed",
    "person.view": "person viewed",
    "person.list": "persons listed",
    "person.import": "persons imported",
    "person.erase": "person erased",
    "search": "photo searched",
    "search.video.start": "video search started",
    "search.video": "video searched",
    "search.video.view": "video search result viewed",
    "search.video.cancel": "video search cancelled",
    "search.history.view": "search history viewed",
    "search.rate_limited": "search refused: too many at once",
    "compare": "two photos compared",
    "detect": "faces detected",
    # Accounts, the trail itself and operations.
    "setup": "first administrator created",
    "login": "signed in",
    "logout": "signed out",
    "access.denied": "access refused",
    "user.create": "user created",
    "user.update": "user changed",
    "token.create": "API token created",
    "token.revoke": "API token revoked",
    "audit.view": "audit trail read",
    "audit.verify": "audit trail checked",
    "audit.export": "audit trail exported",
    "backup.create": "backup made",
    "backup.restore": "backup restored",
    "key.rotate": "encryption key rotated",
    "job.import": "import started",
    "job.reindex": "search index rebuild started",
    "job.cancel": "job cancelled",
    "job.resume": "job resumed",
    "index.rebuild": "search index rebuilt",
}


def action_label(action: str) -> str:
    """Return the plain-words label of an audit action; an action without one reads as its own
    words ("retention.sweep" -> "retention sweep")."""
    label = ACTION_LABELS.get(action)
    if label is not None:
        return label
    return action.replace(".", " ").replace("_", " ").strip() or action
