"""Receiver cold start: its imports against `import boto3` alone (budget: at most 1.25x).

Each sample is a fresh interpreter, so nothing is cached between samples; both sides are measured
alternately in the same run and the ratio of medians is printed. Run: `make bench`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 15
BUDGET = 1.25

_PROBE = """
import sys, time, json
t = time.perf_counter()
{imports}
elapsed = time.perf_counter() - t
heavy = sorted(m for m in ("stripe", "pynamodb", "pydantic", "httpx", "aiohttp") if m in sys.modules)
print(json.dumps({{"seconds": elapsed, "heavy": heavy}}))
"""

_BASELINE = "import boto3"
_RECEIVER = (
    "import importlib.util\n"
    f"spec = importlib.util.spec_from_file_location('app', {str(ROOT / 'functions/webhook/app.py')!r})\n"
    "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)"
)


def _sample(imports: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers/revsync"), "PYTHONDONTWRITEBYTECODE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(imports=imports)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    _sample(_RECEIVER)  # warm the bytecode caches once, as a deployed package has them
    baseline: list[float] = []
    receiver: list[float] = []
    heavy: set[str] = set()
    for _ in range(SAMPLES):
        baseline.append(float(_sample(_BASELINE)["seconds"]))  # type: ignore[arg-type]
        probe = _sample(_RECEIVER)
        receiver.append(float(probe["seconds"]))  # type: ignore[arg-type]
        heavy.update(probe["heavy"])  # type: ignore[arg-type]
    ratio = statistics.median(receiver) / statistics.median(baseline)
    print(f"import boto3            median {statistics.median(baseline) * 1000:7.1f} ms (n={SAMPLES})")
    print(f"receiver (webhook/app)  median {statistics.median(receiver) * 1000:7.1f} ms")
    print(f"ratio {ratio:.2f}x (budget {BUDGET}x); heavy modules on the path: {sorted(heavy) or 'none'}")
    return 0 if ratio <= BUDGET and not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
