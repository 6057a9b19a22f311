"""template.yaml: cfn-lint clean, translated offline by aws-sam-translator, least privilege."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from revsync.domain.at_risk import KINDS
from revsync.store.models import CustomerRecordItem
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from local import template as local_template
from local.language_extensions import expand

ROOT = Path(__file__).resolve().parents[2]


class _NoManagedPolicyLookup:
    """The translator asks IAM for managed policy ARNs by name; the template uses none by name."""

    def load(self) -> dict[str, str]:
        return {}


def translated_template() -> dict[str, Any]:
    # CloudFormation runs AWS::LanguageExtensions before SAM's transform; the translator does not.
    template = expand(yaml_parse((ROOT / "template.yaml").read_text()))
    # What `sam package` does before CloudFormation sees the template: local code paths become S3 URIs.
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(props.get(key), str):
                assert (ROOT / props[key]).exists(), props[key]
                props[key] = f"s3://revsync-artifacts/{props[key].strip('/')}"
    # The region comes from tests/conftest.py's environment; nothing here calls AWS.
    output: dict[str, Any] = transform(template, {}, _NoManagedPolicyLookup())
    return output


def translated_template_source() -> dict[str, Any]:
    """template.yaml as written (CodeUri and Handler of each function)."""
    source: dict[str, Any] = yaml_parse((ROOT / "template.yaml").read_text())
    return source


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translated_template()


def test_cfn_lint_passes() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), str(ROOT / "template.yaml")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _resources(translated: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return {k: v for k, v in translated["Resources"].items() if v["Type"] == resource_type}


def test_functions_are_python312_arm64_with_the_layer(translated: dict[str, Any]) -> None:
    functions = _resources(translated, "AWS::Lambda::Function")
    assert set(functions) == {
        "WebhookFunction",
        "WorkerFunction",
        "TenantApiFunction",
        "ImporterFunction",
        "ReconcilerFunction",
        "RollupFunction",
    }
    for function in functions.values():
        props = function["Properties"]
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["arm64"]
        assert props["Layers"]
    receiver = functions["WebhookFunction"]["Properties"]
    assert receiver["MemorySize"] <= 256
    assert receiver["Timeout"] <= 10


def _mapping(translated: dict[str, Any], function: str) -> dict[str, Any]:
    [mapping] = [
        m["Properties"]
        for m in _resources(translated, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": function}
    ]
    return dict(mapping)


def test_worker_reports_partial_batch_failures(translated: dict[str, Any]) -> None:
    assert _mapping(translated, "WorkerFunction")["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_rollup_reads_the_sync_tables_stream_in_order_and_loses_nothing(
    translated: dict[str, Any],
) -> None:
    """Old and new images of every sync item change; one batch per shard at a time, with the shard's
    id (a tumbling window's event carries it: revsync.domain.rollup keeps each shard's position),
    retried until its records leave the stream and then kept in a queue; its lag alarms."""
    resources = translated["Resources"]
    stream = resources["SyncTable"]["Properties"]["StreamSpecification"]
    assert stream == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    mapping = resources["RollupFunctionSyncStream"]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["SyncTable", "StreamArn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ParallelizationFactor"] == 1
    assert mapping["TumblingWindowInSeconds"] > 0  # for the shardId in each event
    assert mapping["MaximumRetryAttempts"] == -1
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["RollupFailuresQueue", "Arn"]
    }
    assert 0 < mapping["MaximumBatchingWindowInSeconds"] <= 60  # the lag a quiet stream adds
    lag = resources["RollupLagAlarm"]["Properties"]
    assert (lag["Namespace"], lag["MetricName"]) == ("AWS/Lambda", "IteratorAge")
    assert lag["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "RollupFunction"}}]
    failures = resources["RollupFailuresAlarm"]["Properties"]
    assert failures["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["RollupFailuresQueue", "QueueName"]}
    positions = resources["RevenueTable"]["Properties"]["TimeToLiveSpecification"]
    assert positions == {"AttributeName": "expires_at", "Enabled": True}
    # The tenant API reads the rollup and writes nothing there.
    role = resources["TenantApiFunctionRole"]["Properties"]["Policies"]
    revenue = [
        statement
        for policy in role
        for statement in policy["PolicyDocument"]["Statement"]
        if "RevenueTable" in json.dumps(statement["Resource"])
    ]
    assert revenue
    assert not {a for s in revenue for a in s["Action"] if "Put" in a or "Update" in a or "Delete" in a}


def test_events_queue_is_fifo_with_a_dlq_and_an_alarm(translated: dict[str, Any]) -> None:
    queue = translated["Resources"]["EventsQueue"]["Properties"]
    assert queue["FifoQueue"] is True
    assert queue["ContentBasedDeduplication"] is False
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}
    assert translated["Resources"]["EventsDeadLetterQueue"]["Properties"]["FifoQueue"] is True
    alarm = translated["Resources"]["DeadLetterAlarm"]["Properties"]
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["EventsDeadLetterQueue", "QueueName"]}


def test_tables_are_on_demand_encrypted_with_pitr(translated: dict[str, Any]) -> None:
    tables = _resources(translated, "AWS::DynamoDB::Table")
    assert len(tables) == 4
    for table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def _statements(translated: dict[str, Any]) -> list[dict[str, Any]]:
    statements = []
    for role in _resources(translated, "AWS::IAM::Role").values():
        for policy in role["Properties"].get("Policies", []):
            statements.extend(policy["PolicyDocument"]["Statement"])
    return statements


# Step Functions' vended log delivery: AWS accepts only "*" as the resource of these actions.
LOG_DELIVERY_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def test_least_privilege_no_wildcard_actions(translated: dict[str, Any]) -> None:
    statements = _statements(translated)
    assert statements
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            assert action != "*"
            assert not action.endswith(":*"), action
        if statement.get("Resource") == "*":
            assert set(actions) <= LOG_DELIVERY_ACTIONS, statement


def test_operations_logs_kept_alarms_and_tracing_where_instrumented(translated: dict[str, Any]) -> None:
    resources = translated["Resources"]
    groups = _resources(translated, "AWS::Logs::LogGroup")
    for function in _resources(translated, "AWS::Lambda::Function"):
        group = groups[f"{function}LogGroup"]["Properties"]
        assert group["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{function}}}"}
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    for function in _resources(translated, "AWS::Lambda::Function").values():
        # Lambda's own lines only when they are warnings; the application's at the stack's LogLevel.
        assert function["Properties"]["LoggingConfig"] == {
            "LogFormat": "JSON",
            "ApplicationLogLevel": {"Ref": "LogLevel"},
            "SystemLogLevel": "WARN",
        }
    # Metrics lines carry no level (Lambda counts them as INFO): a level above INFO would drop them.
    assert translated["Parameters"]["LogLevel"]["AllowedValues"] == ["DEBUG", "INFO"]
    logging = resources["BackfillStateMachine"]["Properties"]["LoggingConfiguration"]
    assert logging["Level"] == "ERROR"
    assert logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"] == {
        "Fn::GetAtt": ["BackfillLogGroup", "Arn"]
    }
    alarms = _resources(translated, "AWS::CloudWatch::Alarm")
    assert {
        "DeadLetterAlarm",
        "WorkerErrorsAlarm",
        "ReceiverServerErrorsAlarm",
        "ReceiverErrorsAlarm",
        "BackfillFailedAlarm",
        "ReconcileDeadLetterAlarm",
        "ReconcileBehindAlarm",
        "RollupLagAlarm",
        "RollupFailuresAlarm",
    } <= set(alarms)
    # X-Ray where Powertools' Tracer instruments the handler, and only there.
    for name, function in _resources(translated, "AWS::Lambda::Function").items():
        declared = translated_template_source()["Resources"][name]["Properties"]
        module = declared["Handler"].rsplit(".", 1)[0]
        source = (ROOT / declared["CodeUri"] / f"{module}.py").read_text()
        traced = function["Properties"].get("TracingConfig", {}).get("Mode") == "Active"
        assert traced == ("Tracer()" in source), name


PUBLIC_ROUTES = {
    "POST /webhooks/stripe",
    "POST /webhooks/stripe/{tenant_id}",
    "GET /health",
    "GET /oauth/stripe/callback",
    "GET /settings",
}


# docs/contracts.md's admin routes (the contract's route table).
ADMIN_ROUTES = {
    "POST /tenants/{tenant_id}/stripe/connect",
    "PUT /tenants/{tenant_id}/stripe/connection",
    "GET /tenants/{tenant_id}/stripe",
    "GET /tenants/{tenant_id}/stripe/traits",
    "PUT /tenants/{tenant_id}/stripe/config",
    "POST /tenants/{tenant_id}/stripe/backfill",
    "DELETE /tenants/{tenant_id}/stripe",
    "GET /tenants/{tenant_id}/customers/{external_id}",
    "GET /tenants/{tenant_id}/stripe/settings",
    "POST /tenants/{tenant_id}/stripe/reconcile",
    "GET /tenants/{tenant_id}/revenue",
    "GET /tenants/{tenant_id}/customers/{external_id}/history",
    "GET /tenants/{tenant_id}/stripe/policy",
    "PUT /tenants/{tenant_id}/stripe/policy",
    "GET /tenants/{tenant_id}/risks",
}


def test_public_routes_have_no_authorizer_and_every_admin_route_follows_admin_auth(
    translated: dict[str, Any],
) -> None:
    api = translated["Resources"]["HttpApi"]["Properties"]["Body"]
    sam_routes = {f"{m.upper()} {p}" for p, methods in api["paths"].items() for m in methods}
    assert sam_routes == PUBLIC_ROUTES
    for methods in api["paths"].values():
        for operation in methods.values():
            assert operation.get("security", []) in ([], [{}]), operation
    admin = {
        props["RouteKey"]: props
        for props in (r["Properties"] for r in _resources(translated, "AWS::ApiGatewayV2::Route").values())
    }
    for route, props in admin.items():
        assert route.split(" ", 1)[1].startswith("/tenants/{tenant_id}"), route
        assert props["Target"] == {"Fn::Sub": "integrations/${TenantApiIntegration}"}
        assert props["AuthorizationType"] == {"Fn::If": ["UseJwt", "JWT", "AWS_IAM"]}, route
        assert props["AuthorizerId"] == {
            "Fn::If": ["UseJwt", {"Ref": "AdminJwtAuthorizer"}, {"Ref": "AWS::NoValue"}]
        }
    assert set(admin) == ADMIN_ROUTES
    [authorizer] = _resources(translated, "AWS::ApiGatewayV2::Authorizer").values()
    assert authorizer["Condition"] == "UseJwt"
    assert authorizer["Properties"]["AuthorizerType"] == "JWT"
    assert authorizer["Properties"]["IdentitySource"] == ["$request.header.Authorization"]
    environment = translated["Resources"]["TenantApiFunction"]["Properties"]["Environment"]["Variables"]
    assert environment["ADMIN_AUTH"] == {"Ref": "AdminAuth"}
    assert environment["JWT_TENANT_CLAIM"] == {"Ref": "JwtTenantClaim"}


def test_admin_routes_are_declared_once_and_keep_the_logical_ids_stacks_were_deployed_with(
    translated: dict[str, Any],
) -> None:
    """One Fn::ForEach over the AdminRoutes mapping's names. A route given a new logical id would be
    created before the old one is deleted, and API Gateway refuses a second route with the same key:
    the update of a deployed stack would fail."""
    source = yaml_parse((ROOT / "template.yaml").read_text())
    assert source["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]
    written = [r for r in source["Resources"].values() if isinstance(r, dict) and "Type" in r]
    assert not [r for r in written if r["Type"] == "AWS::ApiGatewayV2::Route"]
    _, names, _ = source["Resources"]["Fn::ForEach::AdminRoutes"]
    assert names == list(source["Mappings"]["AdminRoutes"])  # none declared and left out of the loop
    assert set(_resources(translated, "AWS::ApiGatewayV2::Route")) == {
        "ConnectRoute",
        "DisconnectRoute",
        "SettingsPageRoute",
        "GetTraitsRoute",
        "PutConnectionRoute",
        "PutConfigRoute",
        "StartBackfillRoute",
        "GetStatusRoute",
        "GetCustomerRoute",
        "ReconcileRoute",
        "GetCustomerHistoryRoute",
        "GetRevenueRoute",
        "GetPolicyRoute",
        "PutPolicyRoute",
        "GetRisksRoute",
    }


def _customers_table(monkeypatch: pytest.MonkeyPatch, risk_indexes: str) -> dict[str, Any]:
    """The customers table's properties as CloudFormation makes them with ``RiskIndexes``."""
    defaults = local_template.parameter_defaults()
    monkeypatch.setattr(
        local_template, "parameter_defaults", lambda: {**defaults, "RiskIndexes": risk_indexes}
    )
    names = local_template.LocalNames(region="us-east-1", queue_urls={})
    properties: dict[str, Any] = names.resolve(local_template.load_template()["Resources"]["CustomersTable"])[
        "Properties"
    ]
    return properties


def test_the_customers_tables_risk_indexes_are_the_models_and_come_one_per_deploy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every risk index the record model queries, with its keys and projection; ``RiskIndexes`` n
    gives the first n of them (CloudFormation adds one index to a table per update) and only their
    key attributes (DynamoDB refuses an attribute definition no key uses)."""
    schema = CustomerRecordItem._get_schema()
    model = {
        index["index_name"]: (
            sorted((k["AttributeName"], k["KeyType"]) for k in index["key_schema"]),
            sorted(index["projection"]["NonKeyAttributes"]),
        )
        for index in schema["global_secondary_indexes"]
    }
    assert set(model) == {kind.index for kind in KINDS.values()}
    ordered = [kind.index for kind in KINDS.values()]
    for count in range(len(ordered) + 1):
        table = _customers_table(monkeypatch, str(count))
        indexes = {
            index["IndexName"]: (
                sorted((k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]),
                sorted(index["Projection"]["NonKeyAttributes"]),
            )
            for index in table.get("GlobalSecondaryIndexes", [])
        }
        assert list(indexes) == ordered[:count]
        assert indexes == {name: model[name] for name in ordered[:count]}
        keys = {k["AttributeName"] for k in table["KeySchema"]}
        keys |= {k[0] for keyed, _ in indexes.values() for k in keyed}
        assert {a["AttributeName"] for a in table["AttributeDefinitions"]} == keys


def test_only_the_receiver_has_a_url_and_it_is_public_on_both_permissions(translated: dict[str, Any]) -> None:
    """The receiver's function URL (the endpoint registered in Stripe) is public like its API routes;
    since October 2025 a public URL needs lambda:InvokeFunction (via the URL) besides
    lambda:InvokeFunctionUrl, and aws-sam-translator must have added both."""
    [(logical_id, url)] = _resources(translated, "AWS::Lambda::Url").items()
    assert url["Properties"] == {"AuthType": "NONE", "TargetFunctionArn": {"Ref": "WebhookFunction"}}
    grants = {
        (props["Action"], props.get("InvokedViaFunctionUrl"), props.get("FunctionUrlAuthType"))
        for props in (r["Properties"] for r in _resources(translated, "AWS::Lambda::Permission").values())
        if props["FunctionName"] == {"Ref": "WebhookFunction"} and props["Principal"] == "*"
    }
    assert grants == {("lambda:InvokeFunctionUrl", None, "NONE"), ("lambda:InvokeFunction", True, None)}
    # No API Gateway throttle in front of the URL: the operator may cap the receiver's concurrency.
    assert translated["Resources"]["WebhookFunction"]["Properties"]["ReservedConcurrentExecutions"] == {
        "Fn::If": ["CapReceiver", {"Ref": "ReceiverReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert translated["Conditions"]["CapReceiver"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ReceiverReservedConcurrency"}, 0]}]
    }
    outputs = translated["Outputs"]
    assert outputs["ConnectWebhookUrl"]["Value"] == {
        "Fn::Sub": f"${{{logical_id}.FunctionUrl}}webhooks/stripe"
    }
    assert outputs["TenantWebhookUrlPrefix"]["Value"] == {
        "Fn::Sub": f"${{{logical_id}.FunctionUrl}}webhooks/stripe/"
    }


def test_no_secret_values_in_the_template() -> None:
    text = (ROOT / "template.yaml").read_text()
    for marker in ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"):
        assert marker not in text


def test_missed_events_are_caught_up_one_tenant_per_job_from_a_queue_the_schedule_fills(
    translated: dict[str, Any],
) -> None:
    resources = translated["Resources"]
    [schedule] = _resources(translated, "AWS::Scheduler::Schedule").values()
    props = schedule["Properties"]
    assert props["ScheduleExpression"] == {"Fn::Sub": "rate(${ReconcileMinutes} minutes)"}
    assert props["Target"]["Arn"] == {"Fn::GetAtt": ["ReconcilerFunction", "Arn"]}
    assert json.loads(props["Target"]["Input"]) == {"action": "queue_catch_ups"}
    assert translated["Parameters"]["ReconcileMinutes"]["Default"] == 15
    # One job per invocation, a cap on how many at once, a queue per tenant group with a DLQ.
    mapping = _mapping(translated, "ReconcilerFunction")
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["ReconcileQueue", "Arn"]}
    assert mapping["BatchSize"] == 1
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "ReconcileConcurrency"}}
    assert translated["Parameters"]["ReconcileConcurrency"]["MinValue"] == 2  # Lambda's least
    queue = resources["ReconcileQueue"]["Properties"]
    assert queue["FifoQueue"] is True
    assert queue["DeduplicationScope"] == "messageGroup"
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["ReconcileDeadLetterQueue", "Arn"]
    }
    timeout = resources["ReconcilerFunction"]["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * timeout  # Lambda's advice for an SQS event source
    # A job is not held longer than a stale claim: a dead run's tenant is taken over.
    from revsync.services.reconcile import CLAIM_STALE_SECONDS

    assert timeout < CLAIM_STALE_SECONDS
    dead_letters = resources["ReconcileDeadLetterAlarm"]["Properties"]
    assert dead_letters["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["ReconcileDeadLetterQueue", "QueueName"]}
    behind = resources["ReconcileBehindAlarm"]["Properties"]
    assert behind["Threshold"] == {"Ref": "ReconcileMinutes"}
    [oldest] = [m for m in behind["Metrics"] if "MetricStat" in m]
    assert oldest["MetricStat"]["Metric"]["MetricName"] == "ApproximateAgeOfOldestMessage"
    recovered = resources["EventsRecoveredAlarm"]["Properties"]["Dimensions"]
    assert recovered == [{"Name": "service", "Value": "revsync-reconciler"}]
    reconciler = resources["ReconcilerFunction"]["Properties"]["Environment"]["Variables"]
    assert reconciler["POWERTOOLS_SERVICE_NAME"] == "revsync-reconciler"
    tenant_api = resources["TenantApiFunction"]["Properties"]["Environment"]["Variables"]
    assert tenant_api["RECONCILE_QUEUE_URL"] == reconciler["RECONCILE_QUEUE_URL"] == {"Ref": "ReconcileQueue"}


def _role_actions(translated: dict[str, Any], role: str, prefix: str) -> list[tuple[str, Any, Any]]:
    """(action, resource, condition) of a function role's statements whose actions start with ``prefix``."""
    found = []
    for policy in translated["Resources"][role]["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in actions:
                if action.startswith(prefix):
                    found.append((action, statement["Resource"], statement.get("Condition")))
    return found


def _kind(secret: str) -> dict[str, Any]:
    return {"StringEquals": {"kms:EncryptionContext:secret": secret}}


def test_tenant_secrets_key_is_kept_and_each_function_opens_only_the_kind_it_needs(
    translated: dict[str, Any],
) -> None:
    key = translated["Resources"]["TenantSecretsKey"]
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("Retain", "Retain")  # as the table
    assert key["Properties"]["EnableKeyRotation"] is True
    [deny] = [s for s in key["Properties"]["KeyPolicy"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Null": {"kms:EncryptionContext:tenant_id": "true"}}
    arn = {"Fn::GetAtt": ["TenantSecretsKey", "Arn"]}
    expected = {
        # The public receiver opens webhook secrets, never API keys; only the tenant API encrypts.
        "WebhookFunctionRole": [("kms:Decrypt", arn, _kind("webhook_secret"))],
        "WorkerFunctionRole": [("kms:Decrypt", arn, _kind("api_key"))],
        "ImporterFunctionRole": [("kms:Decrypt", arn, _kind("api_key"))],
        "ReconcilerFunctionRole": [("kms:Decrypt", arn, _kind("api_key"))],
        "TenantApiFunctionRole": [("kms:Encrypt", arn, None), ("kms:Decrypt", arn, _kind("api_key"))],
    }
    for role, grants in expected.items():
        assert _role_actions(translated, role, "kms:") == grants, role
    # Secrets Manager: read a connection saved before sealing; only the tenant API deletes, at once.
    for role in expected:
        actions = [action for action, _, _ in _role_actions(translated, role, "secretsmanager:")]
        assert set(actions) <= {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"} | (
            {"secretsmanager:DeleteSecret"} if role == "TenantApiFunctionRole" else set()
        ), role
    [(_, _, condition)] = _role_actions(translated, "TenantApiFunctionRole", "secretsmanager:Delete")
    assert condition == {"Bool": {"secretsmanager:ForceDeleteWithoutRecovery": "true"}}
