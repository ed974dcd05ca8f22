"""Store layer: the database (SQLAlchemy models, Alembic migrations) and the media folder."""

from facetrace.store.db import Database
from facetrace.store.media import MediaStore

__all__ = ["Database", "MediaStore"]
