"""The search side of AudioVerse: documents, queries and engine adapters; imports nothing of audioverse."""

from search.engine import SearchEngine

__all__ = ["SearchEngine"]
