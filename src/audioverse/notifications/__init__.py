"""Notifications: follows, preferences, new-release alerts, weekly digests and one-click unsubscribe."""
