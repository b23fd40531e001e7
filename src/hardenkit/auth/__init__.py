"""Tenant-claim JWT authentication (see docs/auth.md)."""
