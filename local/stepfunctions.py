"""Step Functions on the local stack: moto's own state machine interpreter runs the repo's ASL files.

moto executes state machines when ``stepfunctions.execute_state_machine`` is on, and invokes Lambda
tasks through its Lambda API; without Docker (``lambda.use_docker`` off) that API is served by its
"simple" Lambda backend. This module is the one hook: a backend of that kind whose ``invoke`` calls
the function's real handler in this process (function name = the template's logical id), reporting
a raised exception as an ``Unhandled`` function error so the ASL's Retry and Catch apply.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import moto.awslambda_simple.models as lambda_simple
from moto.core.base_backend import BackendDict
from moto.core.config import default_user_config

from local import lambda_runtime
from local.template import resources_of_type

log = logging.getLogger("revsync.local.stepfunctions")


def logical_id_of(function_name: str) -> str:
    """``arn:aws:lambda:…:function:ImporterFunction`` or ``ImporterFunction`` → ``ImporterFunction``."""
    name = function_name.split(":function:", 1)[-1].split(":", 1)[0]
    if name not in resources_of_type("AWS::Serverless::Function"):
        raise KeyError(f"no function {name!r} in template.yaml")
    return name


class LocalHandlersLambdaBackend(lambda_simple.LambdaSimpleBackend):
    def invoke(
        self, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> bytes:
        event = json.loads(body) if body else {}
        try:
            result = lambda_runtime.invoke(logical_id_of(function_name), event)
        except Exception as exc:  # what Lambda reports for an exception escaping the handler
            log.warning("local Lambda %s failed: %s", function_name, exc)
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
        return json.dumps(result).encode()


def install() -> None:
    """Turn on moto's interpreter and route its Lambda tasks to the local handlers."""
    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True
    default_user_config.setdefault("lambda", {})["use_docker"] = False
    if not isinstance(lambda_simple.lambda_simple_backends, _LocalBackendDict):
        lambda_simple.lambda_simple_backends = _LocalBackendDict(LocalHandlersLambdaBackend, "lambda")


def uninstall() -> None:
    """Back to moto's defaults (executions not run), for whatever runs in this process next."""
    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = False
    default_user_config.setdefault("lambda", {})["use_docker"] = True


class _LocalBackendDict(BackendDict):  # type: ignore[type-arg]
    pass
