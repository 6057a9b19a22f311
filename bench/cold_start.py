"""Cold start as built: each function's imports from `sam build`'s artifacts, on the Lambda
runtime's path order, against `import boto3` alone (budgets: receiver 1.25x, the others 2x).

What is measured is what ships: the build directory (`make build` makes `.aws-sam/build`; another
one can be passed as the first argument), the function's code first on the path, then the layer's
`python/`, then what the python3.12 runtime provides (boto3, botocore and their dependencies, taken
from this machine's venv), then the standard library: no site-packages, so nothing the build left
out can be found elsewhere. The function's own module is compiled at import (Lambda's /var/task is
read-only, so no bytecode is written), the layer's is whatever the build shipped. Each sample is a
fresh interpreter; both sides are measured alternately in one run; the ratio of medians is printed.
Run: `make bench` (or `python -m bench.cold_start [build-dir]`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from local.template import LocalNames, resources_of_type

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 21
# docs/contracts.md's budget: the receiver within 1.25x `import boto3`, every other function within 2x (every
# function of the template is measured).
BUDGETS = {
    logical_id: 1.25 if logical_id == "WebhookFunction" else 2.0
    for logical_id in resources_of_type("AWS::Serverless::Function")
}
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")
# What Lambda sets in a function's environment, and what the template sets (tracing on).
LAMBDA_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_LAMBDA_FUNCTION_NAME": "revsync-bench",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
    "LAMBDA_TASK_ROOT": "/var/task",
    "PYTHONDONTWRITEBYTECODE": "1",
}

_PROBE = """
import sys, time, json
sys.path[:] = {path!r} + [p for p in sys.path if p]  # no '': the working directory is not on Lambda's path
t = time.perf_counter()
{imports}
elapsed = time.perf_counter() - t
heavy = sorted(m for m in ("stripe", "pynamodb", "aws_xray_sdk", "requests") if m in sys.modules)
print(json.dumps({{"seconds": elapsed, "heavy": heavy}}))
"""


def runtime_dir() -> Path:
    """A directory holding only what the Lambda runtime provides, linked from this venv."""
    import boto3  # noqa: PLC0415 (only to find this venv's site-packages)

    site = Path(boto3.__file__).resolve().parent.parent
    target = Path(tempfile.mkdtemp(prefix="lambda-runtime-"))
    for name in RUNTIME_PROVIDED:
        if (site / name).exists():
            (target / name).symlink_to(site / name)
    return target


def sample(path: list[str], imports: str, environment: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-S", "-c", _PROBE.format(path=path, imports=imports)],
        capture_output=True,
        text=True,
        check=True,
        env={**LAMBDA_ENV, **environment, "PATH": os.environ.get("PATH", "")},
        cwd=tempfile.gettempdir(),
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def function_environment(template: dict[str, Any], logical_id: str) -> dict[str, str]:
    """The function's variables as the stack would set them (its settings are checked at import)."""
    names = LocalNames(region=LAMBDA_ENV["AWS_REGION"], queue_urls={})
    variables = template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    return {k: str(names.resolve(v)) for k, v in variables.items()}


def main() -> int:
    build = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".aws-sam" / "build"
    if not (build / "template.yaml").exists():
        print(f"no build at {build}: run `make build` first", file=sys.stderr)
        return 2
    import yaml  # noqa: PLC0415

    from local.template import _CfnLoader  # noqa: PLC0415

    template = yaml.load((build / "template.yaml").read_text(), Loader=_CfnLoader)
    runtime = runtime_dir()
    layer = build / "RevsyncLayer" / "python"
    baseline_path = [str(runtime)]
    sample(baseline_path, "import boto3", {})  # warm the runtime's own bytecode, as Lambda ships it
    failed = False
    print(f"build {build}; samples {SAMPLES} each; runtime-provided: {', '.join(RUNTIME_PROVIDED)}")
    for logical_id, budget in BUDGETS.items():
        path = [str(build / logical_id), str(layer), str(runtime)]
        environment = function_environment(template, logical_id)
        module = template["Resources"][logical_id]["Properties"]["Handler"].rsplit(".", 1)[0]
        baseline: list[float] = []
        function: list[float] = []
        heavy: set[str] = set()
        for _ in range(SAMPLES):
            baseline.append(float(sample(baseline_path, "import boto3", {})["seconds"]))  # type: ignore[arg-type]
            probe = sample(path, f"import {module}", environment)
            function.append(float(probe["seconds"]))  # type: ignore[arg-type]
            heavy.update(probe["heavy"])  # type: ignore[arg-type]
        ratio = statistics.median(function) / statistics.median(baseline)
        verdict = "ok" if ratio <= budget else "OVER"
        failed |= ratio > budget
        print(
            f"{logical_id:<18} {statistics.median(function) * 1000:7.1f} ms vs import boto3 "
            f"{statistics.median(baseline) * 1000:6.1f} ms: {ratio:4.2f}x (budget {budget}x) {verdict}; "
            f"loads {', '.join(sorted(heavy)) or 'none of stripe/pynamodb/xray/requests'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
