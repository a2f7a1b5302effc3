"""Update-failure diagnosis from engine events: grouping, pattern matching and explanations."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import pytest

from services.copilot.diagnosis import (
    Failure,
    clean_message,
    diagnose,
    explain,
    match_pattern,
    ordered_events,
    urn_name,
    urn_type,
)
from services.copilot.failure_patterns import GENERIC_PATTERN, PATTERNS
from services.copilot.retrieval import load_corpus

Event = dict[str, Any]

STACK_URN = "urn:pulumi:dev::project1::pulumi:pulumi:Stack::project1-dev"
VNET_URN = (
    "urn:pulumi:dev::project1::azure-native:resources:ResourceGroup"
    "$azure-native:network:VirtualNetwork::vnet"
)
VNET_TYPE = "azure-native:network:VirtualNetwork"
BUCKET_URN = "urn:pulumi:prod::site::aws:s3/bucketV2:BucketV2::assets"
BUCKET_TYPE = "aws:s3/bucketV2:BucketV2"
SG_URN = "urn:pulumi:dev::net::aws:ec2/securityGroup:SecurityGroup::web-sg"
VPC_URN = "urn:pulumi:dev::net::aws:ec2/vpc:Vpc::main"
INSTANCE_URN = "urn:pulumi:dev::fleet::aws:ec2/instance:Instance::worker-7"

# -- event builders ------------------------------------------------------------------------


def pre(sequence: int, urn: str, type_: str, op: str = "create") -> Event:
    return {
        "sequence": sequence,
        "timestamp": 1717171700 + sequence,
        "resourcePreEvent": {
            "metadata": {"op": op, "urn": urn, "type": type_, "provider": ""},
            "planning": False,
        },
    }


def diagnostic(sequence: int, urn: str, message: str, severity: str = "error") -> Event:
    return {
        "sequence": sequence,
        "timestamp": 1717171700 + sequence,
        "diagnosticEvent": {
            "urn": urn,
            "prefix": f"{severity}: ",
            "message": message,
            "color": "raw",
            "severity": severity,
        },
    }


def op_failed(sequence: int, urn: str, type_: str, op: str = "create") -> Event:
    return {
        "sequence": sequence,
        "timestamp": 1717171700 + sequence,
        "resOpFailedEvent": {
            "metadata": {"op": op, "urn": urn, "type": type_},
            "status": 1,
            "steps": 1,
        },
    }


def summary(sequence: int, result: str, changes: Mapping[str, int]) -> Event:
    return {
        "sequence": sequence,
        "timestamp": 1717171700 + sequence,
        "summaryEvent": {
            "maybeCorrupt": False,
            "durationSeconds": 4,
            "resourceChanges": dict(changes),
            "PolicyPacks": {},
            "isPreview": False,
            "result": result,
        },
    }


def failed_step(urn: str, type_: str, message: str, op: str = "create") -> list[Event]:
    """One resource failing its step the way the CLI reports it."""
    return [
        pre(1, STACK_URN, "pulumi:pulumi:Stack", op="same"),
        pre(2, urn, type_, op=op),
        diagnostic(3, urn, message),
        op_failed(4, urn, type_, op=op),
        diagnostic(5, STACK_URN, "update failed\n"),
        summary(6, "failed", {"same": 1}),
    ]


OUTPUT_MESSAGE = (
    "<{%reset%}>azure-native:network:VirtualNetwork resource 'vnet': property "
    "resourceGroupName value {Calling [ToString] on an [Output<T>] is not supported.\n\n"
    "To get the value of an Output<T> as an Output<string> consider:\n"
    '1. o.Apply(v => $"prefix{v}suffix")\n'
    '2. Output.Format($"prefix{hostname}suffix")\n'
    "See https://www.pulumi.com/docs/concepts/inputs-outputs for more details.}\n"
    'Code="InvalidResourceGroupName" Message="Resource group name is invalid" '
    "StatusCode=400 Bad Request<{%reset%}>\n"
)

SEED_EVENTS = [
    {"sequence": 0, "timestamp": 1717171700, "preludeEvent": {"config": {}}},
    pre(1, STACK_URN, "pulumi:pulumi:Stack", op="same"),
    pre(2, VNET_URN, VNET_TYPE),
    diagnostic(3, VNET_URN, OUTPUT_MESSAGE),
    op_failed(4, VNET_URN, VNET_TYPE),
    diagnostic(5, STACK_URN, "update failed\n"),
    summary(6, "failed", {"same": 2}),
]

AWS_CREDENTIALS_MESSAGE = (
    "creating S3 Bucket (assets): operation error S3: CreateBucket, get identity: get "
    "credentials: failed to refresh cached credentials, no EC2 IMDS role found, operation "
    "error ec2imds: GetMetadata, request canceled, context deadline exceeded\n"
    "NoCredentialProviders: no valid providers in chain\n"
)

BUCKET_EXISTS_MESSAGE = (
    "creating S3 Bucket (assets-prod-logs): operation error S3: CreateBucket, https response "
    "error StatusCode: 409, RequestID: 4FJ2XQ, HostID: abc=, BucketAlreadyExists: \n"
)

DEPENDENCY_MESSAGE = (
    "deleting EC2 Security Group (sg-0a1b2c3d): operation error EC2: DeleteSecurityGroup, "
    "https response error StatusCode: 400, RequestID: 77, api error DependencyViolation: "
    "resource sg-0a1b2c3d has a dependent object\n"
)

QUOTA_MESSAGE = (
    "creating EC2 Instance: operation error EC2: RunInstances, https response error "
    "StatusCode: 400, api error VcpuLimitExceeded: You have requested more vCPU capacity "
    "than your current vCPU limit of 32 allows for the instance bucket that the specified "
    "instance type belongs to.\n"
)

# -- the seed's Output<T> failure ----------------------------------------------------------


def test_seed_output_misuse_failure() -> None:
    diagnosis = diagnose(SEED_EVENTS)

    assert not diagnosis.succeeded
    assert len(diagnosis.failures) == 1
    failure = diagnosis.failures[0]
    assert (failure.urn, failure.type, failure.op) == (VNET_URN, VNET_TYPE, "create")
    assert "<{%" not in failure.messages[0]
    assert "Calling [ToString] on an [Output<T>] is not supported" in failure.messages[0]
    assert diagnosis.general_errors == ("update failed",)
    assert [(f, p.key) for f, p in diagnosis.matches] == [(failure, "output-misuse")]
    assert dict(diagnosis.summary_changes) == {"same": 2}


def test_seed_output_misuse_explanation() -> None:
    text = explain(diagnose(SEED_EVENTS), "project1/dev", 4)

    assert text.startswith("The update to stack `project1/dev` (version 4) failed.")
    assert f"`{VNET_URN}`" in text
    assert "`vnet`" in text
    assert "Calling [ToString] on an [Output<T>] is not supported" in text
    assert "**How to resolve the issue:**" in text
    assert "Output.Format" in text
    assert ".Apply(" in text
    assert "**Inputs and outputs**" in text
    # The bare "update failed" line adds nothing to the explanation.
    assert "Other errors" not in text


# -- other realistic failures --------------------------------------------------------------


def test_aws_credentials_failure() -> None:
    diagnosis = diagnose(failed_step(BUCKET_URN, BUCKET_TYPE, AWS_CREDENTIALS_MESSAGE))

    assert [p.key for _, p in diagnosis.matches] == ["missing-credentials"]
    text = explain(diagnosis, "site/prod", 12)
    assert BUCKET_URN in text
    assert "NoCredentialProviders" in text
    assert "AWS_PROFILE" in text
    assert "agent" in text


def test_bucket_already_exists() -> None:
    diagnosis = diagnose(failed_step(BUCKET_URN, BUCKET_TYPE, BUCKET_EXISTS_MESSAGE))

    assert [p.key for _, p in diagnosis.matches] == ["already-exists"]
    text = explain(diagnosis, "site/prod", 3)
    assert BUCKET_URN in text
    assert "BucketAlreadyExists" in text
    assert "pulumi import" in text


def test_dependency_violation_on_destroy() -> None:
    events = [
        pre(1, VPC_URN, "aws:ec2/vpc:Vpc", op="delete"),
        pre(2, SG_URN, "aws:ec2/securityGroup:SecurityGroup", op="delete"),
        diagnostic(3, SG_URN, DEPENDENCY_MESSAGE),
        op_failed(4, SG_URN, "aws:ec2/securityGroup:SecurityGroup", op="delete"),
        summary(5, "failed", {"delete": 3}),
    ]

    diagnosis = diagnose(events)

    assert [(f.urn, f.op) for f in diagnosis.failures] == [(SG_URN, "delete")]
    assert [p.key for _, p in diagnosis.matches] == ["dependency-violation"]
    text = explain(diagnosis, "net/dev", 9)
    assert "`web-sg` (aws:ec2/securityGroup:SecurityGroup, delete)" in text
    assert "DependencyViolation" in text
    assert "dependsOn" in text
    assert "3 delete" in text


def test_quota_failure() -> None:
    diagnosis = diagnose(failed_step(INSTANCE_URN, "aws:ec2/instance:Instance", QUOTA_MESSAGE))

    assert [p.key for _, p in diagnosis.matches] == ["quota-exceeded"]
    text = explain(diagnosis, "fleet/dev", 1)
    assert INSTANCE_URN in text
    assert "VcpuLimitExceeded" in text
    assert "request an increase" in text


def test_successful_update() -> None:
    events = [
        pre(1, STACK_URN, "pulumi:pulumi:Stack"),
        pre(2, BUCKET_URN, BUCKET_TYPE),
        diagnostic(3, BUCKET_URN, "deprecated: use BucketV2 instead\n", severity="warning"),
        summary(4, "succeeded", {"create": 2, "same": 0}),
    ]

    diagnosis = diagnose(events)

    assert diagnosis.succeeded
    assert diagnosis.failures == ()
    assert diagnosis.general_errors == ()
    assert diagnosis.matches == ()
    text = explain(diagnosis, "site/prod", 2)
    assert (
        text == "The update to stack `site/prod` (version 2) succeeded: 2 create. Nothing to fix."
    )


def test_events_out_of_order_and_duplicated() -> None:
    shuffled = [*SEED_EVENTS, SEED_EVENTS[3], SEED_EVENTS[4]]
    random.Random(7).shuffle(shuffled)

    assert diagnose(shuffled) == diagnose(SEED_EVENTS)


def test_ordered_events_drop_retried_sequences_and_keep_unnumbered_last() -> None:
    first = {"sequence": 1, "cancelEvent": {}}
    repeat = {"sequence": 1, "stdoutEvent": {"message": "retry"}}
    loose = {"stdoutEvent": {"message": "loose"}}
    zero = {"sequence": 0, "stdoutEvent": {"message": "zero"}}

    assert ordered_events([loose, first, repeat, zero]) == [zero, first, loose]


def test_several_failures_each_get_their_own_cause() -> None:
    events = [
        pre(1, BUCKET_URN, BUCKET_TYPE),
        pre(2, INSTANCE_URN, "aws:ec2/instance:Instance"),
        diagnostic(3, BUCKET_URN, BUCKET_EXISTS_MESSAGE),
        diagnostic(4, INSTANCE_URN, QUOTA_MESSAGE),
        op_failed(5, BUCKET_URN, BUCKET_TYPE),
        op_failed(6, INSTANCE_URN, "aws:ec2/instance:Instance"),
        summary(7, "failed", {}),
    ]

    diagnosis = diagnose(events)

    assert [(f.urn, p.key) for f, p in diagnosis.matches if f is not None] == [
        (BUCKET_URN, "already-exists"),
        (INSTANCE_URN, "quota-exceeded"),
    ]
    text = explain(diagnosis, "site/prod", 5)
    assert "2 resources failed" in text
    assert text.index("BucketAlreadyExists") < text.index("VcpuLimitExceeded")


def test_missing_config_is_a_program_level_error() -> None:
    message = (
        "Missing required configuration variable 'aws:region'\n"
        "    please set a value using the command `pulumi config set aws:region <value>`\n"
    )
    events = [
        pre(1, STACK_URN, "pulumi:pulumi:Stack"),
        diagnostic(2, STACK_URN, message),
        summary(3, "failed", {}),
    ]

    diagnosis = diagnose(events)

    assert diagnosis.failures == ()
    assert diagnosis.general_errors == (message.strip(),)
    assert [(f, p.key) for f, p in diagnosis.matches] == [(None, "missing-config")]
    text = explain(diagnosis, "site/dev", 1)
    assert "the program itself" in text
    assert "Missing required configuration variable 'aws:region'" in text
    assert "pulumi config set <key> <value>" in text


def test_diagnostic_without_urn_is_a_general_error() -> None:
    events = [
        diagnostic(0, "", "[409] Conflict: Another update is currently in progress.\n"),
        {"sequence": 1, "timestamp": 1, "errorEvent": {"error": "the engine stopped"}},
    ]

    diagnosis = diagnose(events)

    assert not diagnosis.succeeded
    assert diagnosis.general_errors == (
        "[409] Conflict: Another update is currently in progress.",
        "the engine stopped",
    )
    assert [(f, p.key) for f, p in diagnosis.matches] == [(None, "update-conflict")]
    text = explain(diagnosis, "site/dev", 8)
    assert "pulumi cancel" in text
    assert "> the engine stopped" in text


def test_unrecognised_failure_gets_generic_remediation() -> None:
    message = "creating widget: the gizmo declined politely\n"
    diagnosis = diagnose(failed_step(BUCKET_URN, BUCKET_TYPE, message))

    assert [p for _, p in diagnosis.matches] == [GENERIC_PATTERN]
    text = explain(diagnosis, "site/prod", 6)
    assert BUCKET_URN in text
    assert "> creating widget: the gizmo declined politely" in text
    assert "pulumi preview --diff" in text
    assert "provider's documentation" in text


def test_failed_step_without_diagnostic() -> None:
    events = [
        pre(1, BUCKET_URN, BUCKET_TYPE, op="update"),
        {"sequence": 2, "resOpFailedEvent": {"metadata": {"urn": BUCKET_URN}}},
    ]

    diagnosis = diagnose(events)

    assert diagnosis.failures == (Failure(BUCKET_URN, BUCKET_TYPE, "update", ()),)
    assert [p for _, p in diagnosis.matches] == [GENERIC_PATTERN]


def test_failed_summary_without_details_still_gets_advice() -> None:
    diagnosis = diagnose([summary(0, "failed", {"same": 3})])

    assert not diagnosis.succeeded
    assert diagnosis.matches == ((None, GENERIC_PATTERN),)
    assert "**How to resolve the issue:**" in explain(diagnosis, "a/b", 1)


def test_cancelled_update_without_summary_did_not_succeed() -> None:
    assert not diagnose([{"sequence": 0, "cancelEvent": {}}]).succeeded
    assert diagnose([]).succeeded


def test_failure_type_falls_back_to_the_urn() -> None:
    diagnosis = diagnose([diagnostic(0, VNET_URN, "boom")])

    assert diagnosis.failures == (Failure(VNET_URN, VNET_TYPE, "unknown", ("boom",)),)


# -- helpers -------------------------------------------------------------------------------


def test_urn_parts() -> None:
    assert urn_name(VNET_URN) == "vnet"
    assert urn_type(VNET_URN) == VNET_TYPE
    assert urn_name("not-a-urn") == "not-a-urn"
    assert urn_type("not-a-urn") == ""


def test_clean_message_strips_colour() -> None:
    assert clean_message("<{%fg 1%}>error<{%reset%}>: \x1b[31mboom\x1b[0m\n") == "error: boom"


# -- the pattern table ---------------------------------------------------------------------

POSITIVE_SAMPLES = [
    ("output-misuse", "Calling [ToString] on an [Output<T>] is not supported."),
    ("output-misuse", "Calling __str__ on an Output[T] is not supported."),
    ("output-misuse", "Calling [toString] on an [Output<T>] is not supported. Output.toString"),
    ("output-misuse", "TypeError: 'Output' object is not iterable, consider iterating"),
    (
        "pending-operations",
        "the current deployment has 1 resource(s) with pending operations:\n"
        "  * urn:pulumi:dev::p::aws:rds/instance:Instance::db, interrupted while creating",
    ),
    ("update-conflict", "[409] Conflict: Another update is currently in progress."),
    ("update-conflict", "error: the stack is currently locked by 1 lock(s)."),
    (
        "protected-resource",
        'unable to delete resource "urn:pulumi:dev::p::aws:rds/instance:Instance::db"\n'
        "as it is currently marked for protection.",
    ),
    ("protected-resource", "resource urn:pulumi:dev::p::t::db is protected and cannot be deleted"),
    ("plugin-missing", "could not find plugin for provider aws-v6.52.0"),
    ("plugin-missing", "failed to download plugin: azure-native-2.1.0: 404 Not Found"),
    ("plugin-missing", "no resource plugin 'gcp-v7.0.0' found in the workspace or on your $PATH"),
    ("missing-config", "Missing required configuration variable 'web:dbPassword'"),
    ("missing-credentials", "NoCredentialProviders: no valid providers in chain"),
    ("missing-credentials", "No valid credential sources found for AWS Provider."),
    ("missing-credentials", "DefaultAzureCredential: failed to acquire a token."),
    ("missing-credentials", "Please run 'az login' to setup account."),
    (
        "missing-credentials",
        "google: could not find default credentials. See "
        "https://cloud.google.com/docs/authentication/external/set-up-adc",
    ),
    ("already-exists", "BucketAlreadyOwnedByYou: Your previous request succeeded"),
    ("already-exists", "EntityAlreadyExists: Role with name deployer already exists."),
    ("already-exists", "The storage account named cairnlogs is already taken."),
    ("already-exists", "googleapi: Error 409: Already Exists"),
    ("dependency-violation", "DependencyViolation: resource sg-1 has a dependent object"),
    ("dependency-violation", "Subnet default is in use by NIC nic-1 and cannot be deleted."),
    ("dependency-violation", "The resource subnet-9 cannot be deleted because it is in use"),
    ("dependency-violation", "BucketNotEmpty: The bucket you tried to delete is not empty"),
    (
        "dependency-violation",
        "deleting S3 Bucket (logs): operation error S3: DeleteBucket, https response error "
        "StatusCode: 409, RequestID: 1, api error BucketNotEmpty: The bucket is not empty",
    ),
    ("throttled", "ThrottlingException: Rate exceeded"),
    ("throttled", "RequestLimitExceeded: Request limit exceeded."),
    ("quota-exceeded", "LimitExceeded: Cannot exceed quota for PoliciesPerRole: 10"),
    ("quota-exceeded", "QuotaExceeded: Operation could not be completed as it results in "),
    ("quota-exceeded", "Quota 'CPUS' exceeded. Limit: 24.0 in region us-central1."),
    ("region-unavailable", "LocationNotAvailableForResourceType: The provided location 'x'"),
    ("region-unavailable", "The requested availability zone us-east-1e is not supported."),
    ("region-unavailable", "SkuNotAvailable: The requested size for resource is unavailable"),
    ("invalid-name", "InvalidBucketName: The specified bucket is not valid."),
    ("invalid-name", "AccountNameInvalid: Storage account names must be lowercase letters."),
    ("invalid-name", "name must be lowercase alphanumeric characters or '-'"),
    ("permission-denied", "AccessDenied: User: arn:aws:iam::1:user/ci is not authorized"),
    ("permission-denied", "AuthorizationFailed: The client 'ci' does not have authorization"),
    ("permission-denied", "googleapi: Error 403: Permission denied on resource project x."),
    ("permission-denied", "Error: Forbidden"),
    ("timeout", "timeout while waiting for state to become 'available' (last state: 'creating')"),
    ("timeout", "waiting for EKS Cluster (prod) create: context deadline exceeded"),
]


@pytest.mark.parametrize(("key", "message"), POSITIVE_SAMPLES)
def test_pattern_matches(key: str, message: str) -> None:
    pattern = match_pattern(message)

    assert pattern is not None
    assert pattern.key == key


def test_every_pattern_has_a_positive_sample() -> None:
    assert {key for key, _ in POSITIVE_SAMPLES} == {pattern.key for pattern in PATTERNS}


def test_pattern_table_is_curated() -> None:
    keys = [pattern.key for pattern in PATTERNS]

    assert len(PATTERNS) >= 12
    assert len(set(keys)) == len(keys)
    assert GENERIC_PATTERN.key not in keys
    for pattern in (*PATTERNS, GENERIC_PATTERN):
        assert pattern.title and pattern.explanation and pattern.remediation


def test_doc_hints_name_concept_notes() -> None:
    titles = {note.title for note in load_corpus()}

    for pattern in (*PATTERNS, GENERIC_PATTERN):
        assert pattern.doc_hint in titles, pattern.key


@pytest.mark.parametrize(
    "message",
    ["creating widget: the gizmo declined politely", "update failed", "", "error: boom"],
)
def test_unknown_text_matches_nothing(message: str) -> None:
    assert match_pattern(message) is None
