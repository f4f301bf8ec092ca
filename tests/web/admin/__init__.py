"""Tests of the curator admin at /admin."""
