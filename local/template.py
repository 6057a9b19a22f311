"""Reads template.yaml so the local stack never restates what the template declares.

Tables, queues, function environments and HTTP routes are all taken from the template, expanded as
CloudFormation's AWS::LanguageExtensions transform expands it (local/language_extensions.py), with the
intrinsic functions the template uses (Ref, Sub, GetAtt) resolved against local names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from local.language_extensions import expand

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
LOCAL_STAGE = "local"
ACCOUNT_ID = "123456789012"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, !GetAtt ...) as their long forms."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


@lru_cache(maxsize=1)
def load_template() -> dict[str, Any]:
    with TEMPLATE.open() as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 (SafeLoader subclass)
    return expand(document)


@dataclass(frozen=True, slots=True)
class LocalNames:
    """What each resource is called locally; ``queue_urls`` maps logical id to URL once created."""

    region: str
    queue_urls: dict[str, str]
    state_machine_arns: dict[str, str] = field(default_factory=dict)
    key_arns: dict[str, str] = field(default_factory=dict)  # KMS keys, by logical id, once created

    def resolve(self, value: Any) -> Any:
        return _resolve(value, self)

    def physical_name(self, logical_id: str) -> str:
        resource = load_template()["Resources"][logical_id]
        props = resource.get("Properties", {})
        for key in ("TableName", "QueueName", "LayerName", "Name"):
            if key in props:
                return str(self.resolve(props[key]))
        return logical_id


# The local stack's parameter values: its own stage, and admin routes behind its local JWT issuer
# (local/auth.py), as docs/contracts.md's local stack requires.
LOCAL_PARAMETERS = {"Stage": LOCAL_STAGE, "AdminAuth": "JWT", "AdminLoginUrl": "/_local/login"}


def parameter_defaults() -> dict[str, str]:
    params = {k: str(v.get("Default", "")) for k, v in load_template().get("Parameters", {}).items()}
    params.update(LOCAL_PARAMETERS)
    return params


def condition(name: str) -> bool:
    """A template condition, evaluated with the local parameter values."""
    return bool(_evaluate(load_template()["Conditions"][name]))


def _evaluate(expression: Any) -> Any:
    if isinstance(expression, dict) and len(expression) == 1:
        ((fn, arg),) = expression.items()
        if fn == "Ref":
            return parameter_defaults()[arg]
        if fn == "Fn::Equals":
            return _evaluate(arg[0]) == _evaluate(arg[1])
        if fn == "Fn::Not":
            return not _evaluate(arg[0])
        if fn == "Fn::And":
            return all(_evaluate(item) for item in arg)
        if fn == "Fn::Or":
            return any(_evaluate(item) for item in arg)
        if fn in ("Condition", "Fn::Condition"):  # as written, and as the YAML loader reads `!Condition`
            return condition(arg)
        raise ValueError(f"condition function {fn} is not evaluated locally")
    return expression


# What CloudFormation makes of ``Ref: AWS::NoValue``: the property or list item is left out.
_NO_VALUE = object()


def _resolve(value: Any, names: LocalNames) -> Any:
    params = parameter_defaults()
    pseudo = {
        "AWS::Region": names.region,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "localhost",
    }
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Fn::If":
            name, when_true, when_false = arg
            return _resolve(when_true if condition(name) else when_false, names)
        if fn == "Ref":
            if arg == "AWS::NoValue":
                return _NO_VALUE
            if arg in params:
                return params[arg]
            if arg in pseudo:
                return pseudo[arg]
            resource = load_template()["Resources"][arg]
            if resource["Type"] == "AWS::SQS::Queue":  # its URL, as AWS (and in-process moto) gives it
                default = f"https://sqs.{names.region}.amazonaws.com/{ACCOUNT_ID}/{names.physical_name(arg)}"
                return names.queue_urls.get(arg, default)
            if resource["Type"] == "AWS::Serverless::StateMachine":
                return names.state_machine_arns.get(arg, arg)
            return names.physical_name(arg)
        if fn == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]

            def substitute(match: re.Match[str]) -> str:
                key = match.group(1)
                if key in params:
                    return params[key]
                if key in pseudo:
                    return pseudo[key]
                return str(_resolve({"Ref": key}, names))

            return re.sub(r"\$\{([^}]+)\}", substitute, text)
        if fn == "Fn::GetAtt":
            logical_id, attribute = arg
            if attribute == "FunctionUrl":  # SAM's <Function>Url resource (FunctionUrlConfig)
                return f"https://{function_url_domain(names.region)}/"
            if attribute in ("QueueName", "TableName"):
                return names.physical_name(logical_id)
            if attribute == "Arn":
                resource_type = load_template()["Resources"][logical_id]["Type"]
                if resource_type == "AWS::KMS::Key":
                    return names.key_arns.get(logical_id, logical_id)
                if resource_type == "AWS::Serverless::Function":
                    # Locally a function is named by its logical id (see local/stepfunctions.py).
                    return f"arn:aws:lambda:{names.region}:{ACCOUNT_ID}:function:{logical_id}"
                service = "sqs" if resource_type == "AWS::SQS::Queue" else "dynamodb"
                suffix = (
                    names.physical_name(logical_id)
                    if service == "sqs"
                    else f"table/{names.physical_name(logical_id)}"
                )
                return f"arn:aws:{service}:{names.region}:{ACCOUNT_ID}:{suffix}"
    if isinstance(value, dict):
        resolved = {k: _resolve(v, names) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}
    if isinstance(value, list):
        return [v for v in (_resolve(v, names) for v in value) if v is not _NO_VALUE]
    return value


def resources_of_type(resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in load_template()["Resources"].items() if v["Type"] == resource_type}


def function_environment(logical_id: str, names: LocalNames) -> dict[str, str]:
    """Globals plus the function's own variables, resolved to local names."""
    template = load_template()
    merged: dict[str, Any] = dict(
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    function = template["Resources"][logical_id]["Properties"]
    merged.update(function.get("Environment", {}).get("Variables", {}))
    return {k: str(_resolve(v, names)) for k, v in merged.items()}


@dataclass(frozen=True, slots=True)
class HttpRoute:
    method: str
    path: str  # /tenants/{tenant_id}/stripe
    function: str  # logical id
    code_uri: str
    handler: str
    auth: str  # NONE | AWS_IAM | JWT

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


def _admin_routes() -> list[HttpRoute]:
    """The plain ``AWS::ApiGatewayV2::Route`` resources, with the auth the local parameters choose."""
    template, names = load_template(), LocalNames(region="us-east-1", queue_urls={})
    routes = []
    for resource in resources_of_type("AWS::ApiGatewayV2::Route").values():
        props = resource["Properties"]
        method, path = props["RouteKey"].split(" ", 1)
        integration_id = re.fullmatch(r"integrations/\$\{(\w+)\}", props["Target"]["Fn::Sub"])
        assert integration_id, props["Target"]
        integration = template["Resources"][integration_id.group(1)]["Properties"]
        function = integration["IntegrationUri"]["Fn::GetAtt"][0]
        function_props = template["Resources"][function]["Properties"]
        routes.append(
            HttpRoute(
                method=method,
                path=path,
                function=function,
                code_uri=function_props["CodeUri"],
                handler=function_props["Handler"],
                auth=str(_resolve(props.get("AuthorizationType", "NONE"), names)),
            )
        )
    return routes


@lru_cache(maxsize=1)
def http_routes() -> list[HttpRoute]:
    template = load_template()
    default_auth = (
        template["Resources"]
        .get("HttpApi", {})
        .get("Properties", {})
        .get("Auth", {})
        .get("DefaultAuthorizer", "NONE")
    )
    routes = _admin_routes()
    for logical_id, resource in resources_of_type("AWS::Serverless::Function").items():
        props = resource["Properties"]
        for event in props.get("Events", {}).values():
            if event["Type"] != "HttpApi":
                continue
            spec = event["Properties"]
            routes.append(
                HttpRoute(
                    method=spec["Method"].upper(),
                    path=spec["Path"],
                    function=logical_id,
                    code_uri=props["CodeUri"],
                    handler=props["Handler"],
                    auth=spec.get("Auth", {}).get("Authorizer", default_auth),
                )
            )
    # Like API Gateway: a literal path is matched before a parameterised one.
    return sorted(routes, key=lambda route: route.path.count("{"))


FUNCTION_URL_ID = "local"  # <url-id> in https://<url-id>.lambda-url.<region>.on.aws


def function_url_domain(region: str) -> str:
    """A function URL's host in process (the local stack serves it on REVSYNC_WEBHOOK_PORT)."""
    return f"{FUNCTION_URL_ID}.lambda-url.{region}.on.aws"


def function_urls() -> dict[str, str]:
    """The functions the template gives a URL (``FunctionUrlConfig``): logical id -> AuthType."""
    return {
        logical_id: str(resource["Properties"]["FunctionUrlConfig"]["AuthType"])
        for logical_id, resource in resources_of_type("AWS::Serverless::Function").items()
        if "FunctionUrlConfig" in resource["Properties"]
    }


@dataclass(frozen=True, slots=True)
class QueueSource:
    """An SQS event source of a function (what Lambda's event source mapping polls for it)."""

    function: str  # logical id
    queue: str  # logical id
    batch_size: int


def queue_sources() -> list[QueueSource]:
    """Every ``Type: SQS`` event of the template's functions, with its batch size."""
    found = []
    for logical_id, resource in resources_of_type("AWS::Serverless::Function").items():
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "SQS":
                queue = event["Properties"]["Queue"]["Fn::GetAtt"][0]
                found.append(QueueSource(logical_id, queue, int(event["Properties"].get("BatchSize", 10))))
    return found


@dataclass(frozen=True, slots=True)
class Schedule:
    """A ``ScheduleV2`` event of a function: what EventBridge Scheduler sends it, and how often."""

    function: str  # logical id
    payload: dict[str, Any]


def schedules() -> list[Schedule]:
    return [
        Schedule(logical_id, json.loads(event["Properties"]["Input"]))
        for logical_id, resource in resources_of_type("AWS::Serverless::Function").items()
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "ScheduleV2"
    ]
