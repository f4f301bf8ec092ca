"""Imports every model module so the metadata knows every table (for Alembic and tests)."""

from audioverse import jobs
from audioverse.accounts import models as accounts_models
from audioverse.catalog import models as catalog_models
from audioverse.listening import models as listening_models
from audioverse.reviews import models as reviews_models

__all__ = [
    "accounts_models",
    "catalog_models",
    "jobs",
    "listening_models",
    "reviews_models",
]
