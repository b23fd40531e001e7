"""The hardenkit reference service."""
