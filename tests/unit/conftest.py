from __future__ import annotations

import pytest

from tests.unit import edged_source


def pytest_sessionfinish(session: pytest.Session) -> None:
    edged_source.release()
