"""Sections of :class:`hardenkit.HardenSettings`, one module per concern.

Each section is a pydantic model mixed into ``HardenSettings``; fields keep flat names so
that ``jwt_secret`` is read from ``HARDENKIT_JWT_SECRET``. A section reports rule
violations through the cooperative :meth:`Section.collect_problems` chain.
"""
