"""Shared fixtures: tiny random models of every supported architecture (see `hf_longrope2.tiny.models`)."""

from __future__ import annotations

import pytest

from hf_longrope2.tiny.models import MODEL_TYPES


@pytest.fixture(params=MODEL_TYPES)
def model_type(request) -> str:
    return request.param
