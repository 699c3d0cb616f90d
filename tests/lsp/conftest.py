"""Fixtures for the language server tests (helpers in harness.py): a REAL `cato-backend`
process over emulated replicas, started once per session and always stopped."""

from __future__ import annotations

import pytest

from .harness import BackendProcess


@pytest.fixture(scope="session")
def backend(tmp_path_factory) -> BackendProcess:
    b = BackendProcess(tmp_path_factory.mktemp("backend"))
    b.start()
    try:
        yield b
    finally:
        b.stop()
