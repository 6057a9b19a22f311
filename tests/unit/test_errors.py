"""One error tree (revsync.errors), its categories HTTP-free, mapped to statuses in one module
(revsync.http_errors) that the receiver and the tenant API both answer through."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest
import revsync
from revsync import errors, http_errors

PACKAGE = Path(revsync.__file__).parent
ROOT = PACKAGE.parents[2]
# revsync's own faults: no caller can fix them, so they have no status (the function fails).
UNCATEGORISED = {"SettingsError", "SealedSecretError"}
BUILTIN_BASES = {"Exception", "ValueError", "RuntimeError", "KeyError", "LookupError", "TypeError"}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInput("bad"), 400),
        (errors.TooLarge("big"), 413),
        (errors.Unauthenticated("who"), 401),
        (errors.Forbidden("no"), 403),
        (errors.NotFound("none"), 404),
        (errors.UnsupportedMethod("not so"), 405),
        (errors.Conflict("not now"), 409),
        (errors.UpstreamUnavailable("stripe"), 502),
        (errors.RetryLater("later"), 503),
        (errors.Deferred(2.0, "rate limited"), 503),
        (errors.SettingsError("broken"), None),
    ],
)
def test_each_category_has_one_status(error: errors.RevsyncError, status: int | None) -> None:
    assert http_errors.status_of(error) == status


def test_an_answer_names_the_error_by_its_code_and_message() -> None:
    error = errors.InvalidInput("tenant id is malformed", "invalid_tenant_id")
    assert http_errors.body(error) == {"error": "invalid_tenant_id", "message": "tenant id is malformed"}


def _sources() -> list[Path]:
    return [*PACKAGE.rglob("*.py"), *(ROOT / "functions").rglob("*.py")]


def test_no_exception_outside_the_tree() -> None:
    """Only revsync.errors derives from Python's exceptions; every other error is in the tree."""
    outside = []
    for path in _sources():
        if path == PACKAGE / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {base.id for base in node.bases if isinstance(base, ast.Name)}
                if bases & BUILTIN_BASES:
                    outside.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert not outside


def _revsync_errors() -> set[type[errors.RevsyncError]]:
    for module in pkgutil.walk_packages([str(PACKAGE)], "revsync."):
        importlib.import_module(module.name)
    found: set[type[errors.RevsyncError]] = set()
    pending: list[type[errors.RevsyncError]] = [errors.RevsyncError]
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass.__module__.startswith("revsync") and subclass not in found:
                found.add(subclass)
                pending.append(subclass)
    return found


def test_every_error_is_in_a_category_or_is_revsyncs_own_fault() -> None:
    uncategorised = {
        cls.__name__
        for cls in _revsync_errors()
        if not issubclass(cls, http_errors.ANSWERED)  # every category has a status
    }
    assert uncategorised == UNCATEGORISED


def test_the_domain_and_the_store_choose_no_http_status() -> None:
    for layer in ("domain", "store", "infra"):
        for path in (PACKAGE / layer).rglob("*.py"):
            imported = {
                alias.name
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.ImportFrom)
                for alias in node.names
            }
            assert "http_errors" not in imported, path
