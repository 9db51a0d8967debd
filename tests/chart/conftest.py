"""Fixtures for the chart, image and service-unit tests (tests/chart/helm.py has the helpers)."""

from __future__ import annotations

import pytest

from tests.chart.helm import Helm, require


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(require("helm"), tmp_path_factory.mktemp("helm-home"))
