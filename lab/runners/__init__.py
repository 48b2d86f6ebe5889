"""Runners: sync (one at a time), batch (fixed-size batches), async (many in flight)."""

from __future__ import annotations

from lab.runners.asynchronous import AsyncRunner, RequestHandle
from lab.runners.base import RequestError, RunResult
from lab.runners.batch import BatchRunner
from lab.runners.sync import SyncRunner

__all__ = ["AsyncRunner", "BatchRunner", "RequestError", "RequestHandle", "RunResult", "SyncRunner"]
