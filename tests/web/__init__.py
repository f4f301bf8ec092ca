"""Tests of the browser apps served at ``/``."""
