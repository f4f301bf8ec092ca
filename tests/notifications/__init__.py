"""Tests of follows, notification preferences, alerts, digests and unsubscribing."""
