"""Tests of listening: byte-range streaming (alone and beside nginx), progress, bookmarks and the library."""
