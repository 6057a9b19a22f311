"""What `sam build` ships, built from this tree into a temporary directory with the real SAM CLI.

`make test` installs the SAM CLI (`.sam-venv`) and puts it on PATH; elsewhere, without it, this is
skipped (and CI=true makes a missing SAM CLI an error).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

from local.language_extensions import expand
from local.template import ROOT, resources_of_type
from tests.integration.conftest import sam_cli

pytestmark = pytest.mark.integration

SAM = sam_cli()

LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil")
RUNTIME_PYC = f"cpython-{sys.version_info.major}{sys.version_info.minor}"


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if sys.version_info[:2] != (3, 12):
        pytest.skip("the build precompiles for python3.12, the Lambda runtime: run it with 3.12")
    target = tmp_path_factory.mktemp("sam") / "build"
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(SAM), "build", "--build-dir", str(target), "--template-file", str(ROOT / "template.yaml")],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return target


def test_every_function_and_the_layer_are_built_well_under_lambdas_limit(build: Path) -> None:
    functions = resources_of_type("AWS::Serverless::Function")
    layer = build / "RevsyncLayer"
    assert (layer / "python" / "revsync" / "__init__.py").exists()  # Lambda mounts it at /opt/python
    for logical_id in functions:
        size = _size(build / logical_id) + _size(layer)
        assert size < LAMBDA_UNZIPPED_LIMIT / 4, (logical_id, size)  # "well under" 250 MB
    assert _size(layer) < 60 * 1024 * 1024


def test_the_layer_ships_nothing_the_runtime_provides_nor_tests_or_local_code(build: Path) -> None:
    python = build / "RevsyncLayer" / "python"
    shipped = {p.name for p in python.iterdir()}
    for provided in RUNTIME_PROVIDED:
        assert not any(name == provided or name.startswith(f"{provided}-") for name in shipped), provided
    assert not [p for p in python.rglob("tests") if p.is_dir()]
    assert not [p for p in python.rglob("*-stubs") if p.is_dir()]
    for name in ("local", "bench", "tests", "functions"):
        assert not (python / name).exists()
    # The revsync package is exactly the source tree's modules.
    source = {
        p.relative_to(ROOT / "layers/revsync").as_posix()
        for p in (ROOT / "layers/revsync/revsync").rglob("*.py")
    }
    built = {p.relative_to(python).as_posix() for p in (python / "revsync").rglob("*.py")}
    assert built == source
    # Each function ships its handler and nothing else.
    for logical_id, function in resources_of_type("AWS::Serverless::Function").items():
        module = function["Properties"]["Handler"].rsplit(".", 1)[0]
        names = {p.name for p in (build / logical_id).iterdir()}
        assert names == {f"{module}.py", "__pycache__"}, (logical_id, names)


def test_every_module_is_precompiled_for_the_runtime(build: Path) -> None:
    """Lambda's code and layer directories are read-only: bytecode not shipped is compiled again at
    every cold start."""
    roots = [
        build / "RevsyncLayer" / "python",
        *(build / f for f in resources_of_type("AWS::Serverless::Function")),
    ]
    missing = []
    for root in roots:
        for module in root.rglob("*.py"):
            compiled = module.parent / "__pycache__" / f"{module.stem}.{RUNTIME_PYC}.pyc"
            if not compiled.exists():
                missing.append(str(module.relative_to(build)))
    assert not missing, missing[:10]


def _routes(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each ``AWS::ApiGatewayV2::Route``'s key and authorization, by logical id."""
    return {
        logical_id: {k: v for k, v in resource["Properties"].items() if k not in ("ApiId", "Target")}
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::ApiGatewayV2::Route"
    }


def _chosen(value: Any, jwt: bool) -> Any:
    """``value`` with the UseJwt condition decided, as a stack with that AdminAuth sees it."""
    if isinstance(value, dict) and "Fn::If" in value:
        condition, when_true, when_false = value["Fn::If"]
        assert condition == "UseJwt"
        return _chosen(when_true if jwt else when_false, jwt)
    if isinstance(value, dict):
        chosen = {k: _chosen(v, jwt) for k, v in value.items()}
        return {k: v for k, v in chosen.items() if v != {"Ref": "AWS::NoValue"}}
    return value


# The SAM CLI's own AWS::LanguageExtensions expansion (what `sam build` and `sam deploy` read), run in
# its venv: the dev tools' pins differ from its own.
_SAM_CLI_EXPANSION = """
import json, sys
from samcli.lib.cfn_language_extensions.sam_integration import expand_language_extensions
from samcli.yamlhelper import yaml_parse
template = yaml_parse(open(sys.argv[1]).read())
result = expand_language_extensions(template, json.loads(sys.argv[2]), enabled=True)
print(json.dumps(result.expanded_template))
"""


def _sam_cli_expansion(template: Path, parameters: dict[str, str]) -> dict[str, Any]:
    interpreter = Path(SAM).read_text().splitlines()[0].removeprefix("#!").strip()
    done = subprocess.run(
        [interpreter, "-c", _SAM_CLI_EXPANSION, str(template), json.dumps(parameters)],
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    expanded: dict[str, Any] = json.loads(done.stdout)
    return expanded


def test_the_admin_routes_ship_as_one_loop_that_expands_to_each_route_following_admin_auth(
    build: Path,
) -> None:
    """`sam build` keeps template.yaml's Fn::ForEach for CloudFormation to expand at deploy: expanded
    (local/language_extensions.py), it gives the routes the source does, each with the UseJwt
    conditions; and the SAM CLI's own expansion of what ships, for each AdminAuth, gives the same."""
    built = yaml_parse((build / "template.yaml").read_text())
    assert built["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]
    assert "Fn::ForEach::AdminRoutes" in built["Resources"]
    routes = _routes(expand(built))
    assert routes == _routes(expand(yaml_parse((ROOT / "template.yaml").read_text())))
    assert len(routes) == 15
    for route in routes.values():
        assert route["AuthorizationType"] == {"Fn::If": ["UseJwt", "JWT", "AWS_IAM"]}
        assert route["AuthorizerId"] == {
            "Fn::If": ["UseJwt", {"Ref": "AdminJwtAuthorizer"}, {"Ref": "AWS::NoValue"}]
        }
    for admin_auth in ("IAM", "JWT"):
        theirs = _routes(_sam_cli_expansion(build / "template.yaml", {"AdminAuth": admin_auth}))
        assert theirs == _chosen(routes, admin_auth == "JWT"), admin_auth
