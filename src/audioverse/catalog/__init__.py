"""Catalog: audiobooks, authors, narrators, genres, chapters, uploads and the search outbox."""
