"""Each function's settings against template.yaml: every variable its settings read is set by the
function's Environment (or is one Lambda sets, or an optional local or tuning knob named below), every
variable the template sets is read, and every resource a variable names (table, queue, SSM parameter,
KMS key, bus, state machine) is one the function's role may use.

The settings class is the one the handler's composition root builds from (``revsync.bootstrap``), and
the names are the ones ``from_environ`` actually reads, recorded: nothing here lists them again.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from local.template import load_template
from tests.integration.test_template import translated_template

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REGION, ACCOUNT = "us-east-1", "123456789012"

# Read by the settings but never set by the template, each for a reason.
NOT_FROM_THE_TEMPLATE = {
    "AWS_DEFAULT_REGION",  # Lambda sets it (and AWS_REGION, read first)
    "REVSYNC_LOCAL_CLIENT_TIMEOUT_SECONDS",  # the local stack's moto only
    "REVSYNC_STRIPE_API_BASE",  # the local Stripe sandbox only
    "STRIPE_RATE_LIMIT_TEST",  # Stripe's documented limits by default
    "STRIPE_RATE_LIMIT_LIVE",
    "BACKFILL_HISTORY_BUDGET",  # revsync.domain.backfill.HISTORY_BUDGET by default
}
# Set by the template for Lambda's and Powertools' own use, not revsync's settings.
NOT_FOR_THE_SETTINGS = re.compile(r"POWERTOOLS_\w+|LOG_LEVEL")
# What a role must allow on each kind of resource a setting names (any one of them).
ACTIONS = {
    "AWS::DynamoDB::Table": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"},
    "AWS::SQS::Queue": {"sqs:SendMessage", "sqs:SendMessage*", "sqs:ChangeMessageVisibility"},
    "AWS::KMS::Key": {"kms:Decrypt", "kms:Encrypt"},
    "AWS::Events::EventBus": {"events:PutEvents"},
    "AWS::StepFunctions::StateMachine": {"states:StartExecution"},
    "AWS::SSM::Parameter": {"ssm:GetParameter"},
}
# SAM gives a function with an SQS event source the poller's actions on its queue through this
# managed policy (sqs:ReceiveMessage, DeleteMessage, ChangeMessageVisibility, GetQueueAttributes).
SQS_POLLER_POLICY = "service-role/AWSLambdaSQSQueueExecutionRole"


class _Template:
    """The translated template's expressions, resolved to what CloudFormation would make of them in
    one account and region (each resource named by its logical id, or the name its properties give)."""

    def __init__(self, translated: dict[str, Any]) -> None:
        self.resources: dict[str, Any] = translated["Resources"]
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in translated.get("Parameters", {}).items()
        }
        self.pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}

    def kind(self, logical_id: str) -> str:
        return str(self.resources[logical_id]["Type"])

    def name(self, logical_id: str) -> str:
        props = self.resources[logical_id].get("Properties", {})
        for key in ("TableName", "QueueName", "Name", "StateMachineName"):
            if key in props:
                return str(self.resolve(props[key]))
        return logical_id

    def arn(self, logical_id: str) -> str:
        kind, name = self.kind(logical_id), self.name(logical_id)
        return {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{logical_id}",
            "AWS::Events::EventBus": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}",
            "AWS::StepFunctions::StateMachine": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}",
        }.get(kind, f"arn:aws:other:{REGION}:{ACCOUNT}:{logical_id}")

    def ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        kind = self.kind(name)
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.name(name)}"
        if kind in ("AWS::StepFunctions::StateMachine", "AWS::KMS::Key"):
            return self.arn(name)
        return self.name(name)

    def get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "Arn":
            return self.arn(logical_id)
        if attribute == "FunctionUrl":
            return f"https://{logical_id.lower()}.lambda-url.{REGION}.on.aws/"
        return self.name(logical_id)  # QueueName, Name

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        ((function, argument),) = value.items()
        if function == "Ref":
            return self.ref(argument)
        if function == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.get_att(logical_id, attribute)
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument

            def substitute(match: re.Match[str]) -> str:
                key = match.group(1)
                if key in variables:
                    return str(self.resolve(variables[key]))
                if "." in key:
                    return self.get_att(*key.split(".", 1))
                return self.ref(key)

            return re.sub(r"\$\{([^}]+)\}", substitute, text)
        if function == "Fn::If":
            raise AssertionError(f"a setting chosen by a condition is not checked here: {value}")
        raise AssertionError(f"{function} is not resolved here")

    def named_resource(self, expression: Any) -> tuple[str, str] | None:
        """(kind, ARN) of the resource a variable's expression names, None when it names none."""
        if isinstance(expression, dict) and "Ref" in expression and expression["Ref"] in self.resources:
            return self.kind(expression["Ref"]), self.arn(expression["Ref"])
        if isinstance(expression, dict) and "Fn::GetAtt" in expression:
            logical_id, attribute = expression["Fn::GetAtt"]
            return (self.kind(logical_id), self.arn(logical_id)) if attribute == "Arn" else None
        if isinstance(expression, dict) and "Fn::Sub" in expression:
            path = self.resolve(expression)
            if path.startswith("/"):  # an SSM parameter's name
                return "AWS::SSM::Parameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{path}"
        return None

    def statements(self, function: str) -> Iterator[tuple[set[str], list[str]]]:
        """(actions, resource ARN patterns) of each statement of the function's role."""
        role = self.resources[f"{function}Role"]["Properties"]
        for policy in role.get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if statement["Effect"] != "Allow":
                    continue
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                resources = (
                    statement["Resource"]
                    if isinstance(statement["Resource"], list)
                    else [statement["Resource"]]
                )
                yield set(actions), [str(self.resolve(resource)) for resource in resources]

    def polls(self, function: str, queue_arn: str) -> bool:
        """Whether the function has an SQS event source on the queue (and SAM's poller policy)."""
        role = self.resources[f"{function}Role"]["Properties"]
        if not any(str(arn).endswith(SQS_POLLER_POLICY) for arn in role.get("ManagedPolicyArns", [])):
            return False
        return any(
            props.get("FunctionName") == {"Ref": function}
            and self.resolve(props.get("EventSourceArn")) == queue_arn
            for props in (
                r.get("Properties", {})
                for r in self.resources.values()
                if r["Type"] == "AWS::Lambda::EventSourceMapping"
            )
        )


class _Recording(Mapping[str, str]):
    """An environment that records the names read from it."""

    def __init__(self, variables: dict[str, str]) -> None:
        self._variables, self.read = variables, set[str]()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self._variables[name]

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return self._variables.get(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.read.add(name)
        return name in self._variables

    def __iter__(self) -> Iterator[str]:
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)


@pytest.fixture(scope="module")
def template() -> _Template:
    return _Template(translated_template())


def _functions(template: _Template) -> list[str]:
    return [k for k, v in template.resources.items() if v["Type"] == "AWS::Lambda::Function"]


def _settings_class(function: str) -> Any:
    """The settings class the function's handler builds its graph from (its bootstrap's ``build``)."""
    props = load_template()["Resources"][function]["Properties"]
    module_name, _ = props["Handler"].rsplit(".", 1)
    handler = (ROOT / props["CodeUri"] / f"{module_name.replace('.', '/')}.py").read_text()
    found = re.search(r"^from revsync\.bootstrap import (\w+) as bootstrap$", handler, re.MULTILINE)
    assert found, f"{function}'s handler builds its graph in revsync.bootstrap"
    root = importlib.import_module(f"revsync.bootstrap.{found.group(1)}")
    return get_type_hints(root.build)["settings"]


def _environment(template: _Template, function: str) -> dict[str, Any]:
    props = template.resources[function]["Properties"]
    variables: dict[str, Any] = props.get("Environment", {}).get("Variables", {})
    return variables


def _read(template: _Template, function: str) -> set[str]:
    """The names the function's settings read, from its template environment as Lambda would set it
    (a missing or malformed required one fails here, naming it)."""
    resolved = {
        name: str(template.resolve(value)) for name, value in _environment(template, function).items()
    }
    environ = _Recording({**resolved, "AWS_REGION": REGION})
    _settings_class(function).from_environ(environ)
    return environ.read


def test_every_variable_the_settings_read_is_set_by_the_template_and_every_one_set_is_read(
    template: _Template,
) -> None:
    functions = _functions(template)
    assert len(functions) == 6
    for function in functions:
        read = _read(template, function) - {"AWS_REGION"}
        set_by_template = set(_environment(template, function))
        assert read - set_by_template <= NOT_FROM_THE_TEMPLATE, function
        unread = {name for name in set_by_template - read if not NOT_FOR_THE_SETTINGS.fullmatch(name)}
        assert not unread, f"{function} is given variables its settings never read: {sorted(unread)}"


def test_every_resource_a_setting_names_is_one_the_functions_role_may_use(template: _Template) -> None:
    checked: dict[str, int] = {}
    for function in _functions(template):
        environment = _environment(template, function)
        for name in sorted(_read(template, function) & set(environment)):
            named = template.named_resource(environment[name])
            if named is None:
                continue
            kind, arn = named
            allowed = ACTIONS[kind]
            covered = any(
                actions & allowed and any(fnmatch.fnmatchcase(arn, pattern) for pattern in patterns)
                for actions, patterns in template.statements(function)
            ) or (kind == "AWS::SQS::Queue" and template.polls(function, arn))
            assert covered, (
                f"{function} reads {name} ({arn}) but its role allows none of {sorted(allowed)} on it"
            )
            checked[kind] = checked.get(kind, 0) + 1
    # Every kind is met (a resolution that found nothing would pass the loop above vacuously).
    assert set(checked) == set(ACTIONS), checked
