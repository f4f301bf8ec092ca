"""Tests of byte-range streaming: the RFC 9110 logic alone and side by side with nginx."""
