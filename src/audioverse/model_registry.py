"""Imports every model module so the metadata knows every table (for Alembic and tests)."""

from audioverse import jobs
from audioverse.accounts import models as accounts_models
from audioverse.catalog import models as catalog_models
from audioverse.db import Base
from audioverse.listening import models as listening_models
from audioverse.notifications import models as notifications_models
from audioverse.reviews import models as reviews_models

# SQLite gives a new row the largest id plus one unless the table says AUTOINCREMENT, so a deleted
# row's id would go to the next row (migration 0009); PostgreSQL's sequences never reuse one.
for _table in Base.metadata.tables.values():
    if _table.autoincrement_column is not None:
        _table.dialect_kwargs["sqlite_autoincrement"] = True

__all__ = [
    "accounts_models",
    "catalog_models",
    "jobs",
    "listening_models",
    "notifications_models",
    "reviews_models",
]
