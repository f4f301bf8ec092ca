"""Listening: streaming audio bytes, playback progress, bookmarks and the library."""
