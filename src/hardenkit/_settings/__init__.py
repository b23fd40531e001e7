"""Sections of :class:`hardenkit.HardenSettings` that belong to no single feature.

``core`` (environment, Redis, request ids, errors, health), ``requests`` (timeouts, body
limits, CORS), ``logs``, ``resilience`` and ``risks`` live here and import only leaf
modules; a feature's own section lives next to it (``auth/_settings.py``,
``headers/_settings.py``, ``ratelimit/_settings.py``, ``signing/_settings.py``).
:mod:`hardenkit.settings` composes them all; fields keep flat names, so ``jwt_secret`` is
read from ``HARDENKIT_JWT_SECRET``. A section reports rule violations through the
cooperative ``Section.collect_problems`` chain (:mod:`hardenkit._section`).
"""
