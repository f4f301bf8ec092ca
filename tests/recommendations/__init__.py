"""Recommendation tests."""
