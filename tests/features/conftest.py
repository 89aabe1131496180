"""Fixtures of the feature-store tests (helpers in ``feature_fixtures``)."""

from __future__ import annotations

import pytest

from medtransfer.datamodules import SyntheticMedical

from .feature_fixtures import tiny_backbone, tiny_data


@pytest.fixture
def data() -> SyntheticMedical:
    return tiny_data()


@pytest.fixture
def backbone():
    return tiny_backbone()
