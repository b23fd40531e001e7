"""Per-route values for headers and timeouts: the shared :mod:`hardenkit._paths` rules."""

from hardenkit._paths import PathTable

__all__ = ["PathTable"]
