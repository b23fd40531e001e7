"""Helpers shared by hardenkit's tests (real servers, keys, clocks)."""
