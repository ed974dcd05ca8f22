"""Store layer: the database (SQLAlchemy models, Alembic migrations) and the media folder."""

import facetrace.store.accounts  # noqa: F401  (registers the accounts and audit tables on Base)
import facetrace.store.jobs  # noqa: F401
import facetrace.store.rate_buckets  # noqa: F401
import facetrace.store.reconciliation_models  # noqa: F401  (marks, effects, primary references)
import facetrace.store.workflow_models  # noqa: F401  (reports, cases, leads... tables)
from facetrace.store.db import Database
from facetrace.store.media import MediaStore

__all__ = ["Database", "MediaStore"]
