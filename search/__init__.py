"""The search side of AudioVerse: documents, queries and engine adapters; imports nothing of audioverse."""

from search.documents import AudiobookDocument, GenreRef, PersonDocument, PersonKind, PersonRef
from search.engine import SearchEngine, SearchEngineAccessDenied, SearchEngineError, SearchEngineUnavailable
from search.query import (
    AudiobookSuggestion,
    Highlights,
    PersonSuggestion,
    SearchFilters,
    SearchHit,
    SearchQuery,
    SearchResult,
    Suggestions,
)

__all__ = [
    "AudiobookDocument",
    "AudiobookSuggestion",
    "GenreRef",
    "Highlights",
    "PersonDocument",
    "PersonKind",
    "PersonRef",
    "PersonSuggestion",
    "SearchEngine",
    "SearchEngineAccessDenied",
    "SearchEngineError",
    "SearchEngineUnavailable",
    "SearchFilters",
    "SearchHit",
    "SearchQuery",
    "SearchResult",
    "Suggestions",
]
