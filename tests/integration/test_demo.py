"""`make demo` must keep passing its own record check."""

from __future__ import annotations

import pytest

from local import demo

pytestmark = pytest.mark.integration


def test_demo_story_produces_the_expected_records(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert "OK: 5 records match the revenue rules" in out
    assert "u-ada" in out
