"""Imports every model module so the metadata knows every table (for Alembic and tests)."""

from audioverse.accounts import models as accounts_models

__all__ = ["accounts_models"]
