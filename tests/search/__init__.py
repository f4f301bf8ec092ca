"""Tests of the search package: one contract for both engines, plus what is specific to each."""
