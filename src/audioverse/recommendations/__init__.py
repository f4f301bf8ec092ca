"""Recommendations: personal shelves, similar books, popularity — computed by workers, cached."""
