"""Studies: functions that run a measured experiment and return a tidy table (``pandas.DataFrame``)."""

from __future__ import annotations

__all__: list[str] = []
