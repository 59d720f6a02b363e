"""Glue between the engine and web frameworks, written against the objects they hand us.

Nothing here imports a framework: the engine must stay installable and
importable without any of them (a test checks), so each integration works
with the application object it is given.
"""

from __future__ import annotations

__all__: list[str] = []
