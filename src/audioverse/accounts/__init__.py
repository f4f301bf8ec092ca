"""Accounts: users, tokens, email verification and password reset, profile, roles and guards."""
