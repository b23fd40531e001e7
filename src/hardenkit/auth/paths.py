"""Path patterns for public and API-key paths: the shared :mod:`hardenkit._paths` rules."""

from hardenkit._paths import PathPatterns

__all__ = ["PathPatterns"]
