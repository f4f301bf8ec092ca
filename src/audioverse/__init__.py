"""AudioVerse: an audiobook streaming backend served as an HTTP API."""

__version__ = "0.1.0"
