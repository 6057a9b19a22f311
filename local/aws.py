"""Creates the template's tables, queues, keys and platform parameters on moto (in-process or server)."""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

import boto3

from local.template import ROOT, LocalNames, function_environment, resources_of_type

DEFAULT_WEBHOOK_SECRET = "whsec_local"
DEFAULT_PLATFORM_KEY = "sk_test_platform"


def _table_args(props: dict[str, Any], names: LocalNames) -> dict[str, Any]:
    props = names.resolve(props)  # the indexes the stack's parameters give it
    args: dict[str, Any] = {
        "TableName": props["TableName"],
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if props.get("StreamSpecification"):
        args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    return args


_QUEUE_ATTRIBUTES = {
    "FifoQueue": "FifoQueue",
    "ContentBasedDeduplication": "ContentBasedDeduplication",
    "DeduplicationScope": "DeduplicationScope",
    "FifoThroughputLimit": "FifoThroughputLimit",
    "VisibilityTimeout": "VisibilityTimeout",
    "MessageRetentionPeriod": "MessageRetentionPeriod",
}


def create_resources(region: str, endpoint_url: str | None = None) -> LocalNames:
    """Create every table and queue the template declares; return their local names and URLs."""
    session = boto3.session.Session(region_name=region)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint_url)
    sqs = session.client("sqs", endpoint_url=endpoint_url)
    names = LocalNames(region=region, queue_urls={})

    for resource in resources_of_type("AWS::DynamoDB::Table").values():
        dynamodb.create_table(**_table_args(resource["Properties"], names))

    queues = resources_of_type("AWS::SQS::Queue")
    # Dead-letter queues first: the others' redrive policies point at them.
    ordered = sorted(queues.items(), key=lambda kv: "RedrivePolicy" in kv[1]["Properties"])
    for logical_id, resource in ordered:
        props = resource["Properties"]
        attributes: dict[str, Any] = {
            target: str(props[src]).lower() if isinstance(props[src], bool) else str(props[src])
            for src, target in _QUEUE_ATTRIBUTES.items()
            if src in props
        }
        if "RedrivePolicy" in props:
            policy = names.resolve(props["RedrivePolicy"])
            attributes["RedrivePolicy"] = json.dumps({k: str(v) for k, v in policy.items()})
        url = sqs.create_queue(QueueName=names.physical_name(logical_id), Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
        names.queue_urls[logical_id] = url

    stepfunctions = session.client("stepfunctions", endpoint_url=endpoint_url)
    for logical_id, resource in resources_of_type("AWS::Serverless::StateMachine").items():
        props = resource["Properties"]
        definition = (ROOT / props["DefinitionUri"]).read_text()
        for key, value in props.get("DefinitionSubstitutions", {}).items():
            definition = definition.replace("${" + key + "}", str(names.resolve(value)))
        arn = stepfunctions.create_state_machine(
            name=names.physical_name(logical_id),
            definition=definition,
            roleArn="arn:aws:iam::123456789012:role/local-stepfunctions",
        )["stateMachineArn"]
        names.state_machine_arns[logical_id] = arn

    create_keys(session, endpoint_url, names)
    create_change_feed_tap(session, endpoint_url, names)
    seed_platform_secrets(session, endpoint_url, names)
    return names


def create_keys(session: Any, endpoint_url: str | None, names: LocalNames) -> None:
    """The template's KMS keys, with their key policies and rotation (moto keeps the policy; its
    Decrypt checks the encryption context, as KMS does)."""
    kms = session.client("kms", endpoint_url=endpoint_url)
    for logical_id, resource in resources_of_type("AWS::KMS::Key").items():
        props = names.resolve(resource["Properties"])
        metadata = kms.create_key(Description=props["Description"], Policy=json.dumps(props["KeyPolicy"]))
        if props.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=metadata["KeyMetadata"]["KeyId"])
        names.key_arns[logical_id] = metadata["KeyMetadata"]["Arn"]


CHANGES_TAP = "revsync-local-changes-tap"


def create_change_feed_tap(session: Any, endpoint_url: str | None, names: LocalNames) -> None:
    """The template's buses on moto, plus (locally only) a rule sending every change to a queue of
    its own, so the demo and the tests can read the feed (``read_change_feed``)."""
    events = session.client("events", endpoint_url=endpoint_url)
    sqs = session.client("sqs", endpoint_url=endpoint_url)
    for logical_id in resources_of_type("AWS::Events::EventBus"):
        bus = names.physical_name(logical_id)
        events.create_event_bus(Name=bus)
        url = sqs.create_queue(QueueName=CHANGES_TAP)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=CHANGES_TAP, EventBusName=bus, EventPattern=json.dumps({"source": ["revsync"]}))
        events.put_targets(Rule=CHANGES_TAP, EventBusName=bus, Targets=[{"Id": "tap", "Arn": arn}])
        names.queue_urls[CHANGES_TAP] = url


def remove_change_feed_tap(session: Any, endpoint_url: str | None, names: LocalNames) -> None:
    """Take the local-only tap off the bus, so a PutEvents is a write to the bus as in AWS (a
    benchmark's feed is never read, and moto's queue grows slower to send to with every message)."""
    events = session.client("events", endpoint_url=endpoint_url)
    for logical_id in resources_of_type("AWS::Events::EventBus"):
        bus = names.physical_name(logical_id)
        events.remove_targets(Rule=CHANGES_TAP, EventBusName=bus, Ids=["tap"])
        events.delete_rule(Name=CHANGES_TAP, EventBusName=bus)


def read_change_feed(session: Any, endpoint_url: str | None, names: LocalNames) -> list[dict[str, Any]]:
    """Every change-feed event published since the last read (the local tap queue, drained)."""
    sqs = session.client("sqs", endpoint_url=endpoint_url)
    url = names.queue_urls[CHANGES_TAP]
    found: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def seed_platform_secrets(
    session: boto3.session.Session, endpoint_url: str | None, names: LocalNames
) -> None:
    """Locally, platform secrets come from the environment and are put where AWS would keep them (SSM),
    under the names the template gives the functions."""
    ssm = session.client("ssm", endpoint_url=endpoint_url)
    values = {
        "STRIPE_WEBHOOK_SECRET_PARAM": os.environ.get("REVSYNC_WEBHOOK_SECRET", DEFAULT_WEBHOOK_SECRET),
        "STRIPE_SECRET_KEY_PARAM": os.environ.get("REVSYNC_STRIPE_SECRET_KEY", DEFAULT_PLATFORM_KEY),
        "STRIPE_CONNECT_CLIENT_ID_PARAM": os.environ.get("REVSYNC_CONNECT_CLIENT_ID", "ca_local"),
        "OAUTH_STATE_KEY_PARAM": os.environ.get("REVSYNC_STATE_KEY", secrets.token_hex(32)),
    }
    parameters: dict[str, str] = {}
    for logical_id in resources_of_type("AWS::Serverless::Function"):
        parameters.update(function_environment(logical_id, names))
    for variable, value in values.items():
        ssm.put_parameter(Name=parameters[variable], Value=value, Type="SecureString", Overwrite=True)
