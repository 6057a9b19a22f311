"""`make demo` must keep passing its own check against the Stripe sandbox."""

from __future__ import annotations

import pytest

from local import demo
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e


def test_demo_story_matches_the_sandbox(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("REVSYNC_API_PORT", "REVSYNC_AWS_PORT", "REVSYNC_STRIPE_PORT"):
        monkeypatch.setenv(name, str(free_port()))  # not the defaults: a developer's `make up` may hold them
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert "OK: every record matches the Stripe sandbox" in out
    for external_id in ("u-ada", "u-grace", "u-ken", "u-linus", "u-barbara", "u-margaret", "u-edsger"):
        assert external_id in out
