"""The documents a clone has: nothing cites a file outside the repo, every link between them lands,
and the operations guide covers every parameter and alarm the template deploys."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
# A relative Markdown link: [text](target) where target is no URL.
LINK = re.compile(r"\[[^\]]*\]\((?!https?://|mailto:)([^)\s]+)\)")


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / name for name in listed.stdout.splitlines()]


def anchors(document: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but hyphens and underscores dropped,
    spaces as hyphens."""
    found = set()
    in_code = False
    for line in document.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        found.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return found


def test_nothing_cites_a_file_outside_the_repo() -> None:
    outside = re.compile(r"DESIGN\.md|\.\./shared|/work/shared")
    citing = []
    for path in tracked_files():
        if path == Path(__file__) or not path.is_file() or path.suffix in {".png", ".gz", ".zip"}:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        citing += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in outside.finditer(text)]
    assert citing == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_lands(document: Path) -> None:
    broken = []
    for target in LINK.findall(document.read_text()):
        name, _, anchor = target.partition("#")
        linked = (document.parent / name).resolve() if name else document
        lands = linked.exists() and not (anchor and linked.suffix == ".md" and anchor not in anchors(linked))
        if not lands:
            broken.append(target)
    assert broken == []


def test_operations_covers_every_parameter_and_alarm() -> None:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    operations = (ROOT / "docs" / "operations.md").read_text()
    alarms = [
        name
        for name, resource in template["Resources"].items()
        if isinstance(resource, dict) and resource.get("Type") == "AWS::CloudWatch::Alarm"
    ]
    assert len(alarms) >= 5
    missing = [name for name in [*template["Parameters"], *alarms] if f"`{name}`" not in operations]
    assert missing == []
