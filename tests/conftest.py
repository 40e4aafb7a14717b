import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HALLO_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"
REFERENCE = SHARED / "reference"


@pytest.fixture
def fixtures_dir():
    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES} (../shared is absent)")
    return FIXTURES


@pytest.fixture
def reference_dir():
    if not REFERENCE.is_dir():
        pytest.skip(f"checkpoint manifests not found at {REFERENCE} (../shared is absent)")
    return REFERENCE


@pytest.fixture
def offline_landmarks():
    from tests.landmarks_env import offline_landmarks_skip_reason

    reason = offline_landmarks_skip_reason()
    if reason:
        pytest.skip(reason)
