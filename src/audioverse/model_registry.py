"""Imports every model module so the metadata knows every table (for Alembic and tests)."""
