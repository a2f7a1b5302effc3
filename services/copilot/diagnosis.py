"""Update-failure diagnosis: engine events folded into failures and matched to known causes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# The root resource every program registers; errors attached to it are program-level.
STACK_RESOURCE_TYPE = "pulumi:pulumi:Stack"
# Quoted error lines longer than this are cut; provider errors can embed whole API responses.
MAX_QUOTE_LENGTH = 300

# Pulumi's raw colour directives (`<{%reset%}>`) and terminal escapes that survive `color: raw`.
_COLOR_DIRECTIVE = re.compile(r"<\{%[^%]*%\}>|\x1b\[[0-9;]*[A-Za-z]")
# Lines that only say that something failed, not why.
_NOISE = re.compile(
    r"^(error:\s*)?((update|preview|refresh|destroy|deployment) failed|"
    r"\d+ errors? occurred:?|one or more errors occurred\.?)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Failure:
    """One resource whose step failed, with the error messages the engine reported for it."""

    urn: str
    type: str
    op: str
    messages: tuple[str, ...]


@dataclass(frozen=True)
class Pattern:
    """A known cause of failure: how to recognise it, what it means and how to fix it."""

    key: str
    title: str
    explanation: str
    remediation: tuple[str, ...]
    doc_hint: str
    signals: tuple[re.Pattern[str], ...] = field(default=(), repr=False)

    def key_line(self, text: str) -> str | None:
        """The first line of `text` that matches this pattern, or None."""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        # Signals are tried in order so the most telling one picks the quoted line.
        for signal in self.signals:
            for line in lines:
                if signal.search(line):
                    return line
        return None


@dataclass(frozen=True)
class Diagnosis:
    """What an update's events say about its outcome."""

    succeeded: bool
    failures: tuple[Failure, ...]
    general_errors: tuple[str, ...]
    matches: tuple[tuple[Failure | None, Pattern], ...]
    summary_changes: Mapping[str, int]


def _signals(*expressions: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(expression, re.IGNORECASE) for expression in expressions)


# Priority order: the first pattern that matches wins, so specific causes come before broad
# ones (a quoted Output<T> warning also trips the provider's invalid-name check; an AWS
# RequestLimitExceeded is throttling, not a quota; 409 from the Pulumi API is a lock). A bare
# HTTP 409 is no signal of its own: S3 answers 409 for a non-empty bucket too.
PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        key="output-misuse",
        title="An Output<T> was used as a plain string",
        explanation=(
            "The program turned an `Output<T>` into text before its value was known. Outputs "
            "are resolved asynchronously, so string conversion yields a placeholder warning "
            "instead of the value, and that text was sent to the provider as a property value."
        ),
        remediation=(
            "Find the property built from an output with `ToString()`, `str()`, an f-string "
            "or a template literal; the key error line shows the placeholder text.",
            'Transform the value inside the output: `o.Apply(v => $"prefix{v}suffix")` in C#, '
            '`o.apply(lambda v: f"prefix{v}suffix")` in Python, or `o.apply(v => ...)` in '
            "TypeScript.",
            'Build strings from several outputs with `Output.Format($"...")` (C#), '
            "`Output.concat`/`Output.format` (Python) or `pulumi.interpolate` (TypeScript).",
            "Pass outputs straight into resource arguments; they accept `Input<T>` and wait for "
            "the value themselves.",
        ),
        doc_hint="Inputs and outputs",
        signals=_signals(
            r"calling \[?(tostring|tojson|__str__|__repr__)\]? on an? \[?output",
            r"to get the value of an output",
            r"\boutput\.to(string|json)\b",
            r"'output' object is not (iterable|subscriptable|callable)",
            r"consider iterating the underlying value inside an",
        ),
    ),
    Pattern(
        key="pending-operations",
        title="An earlier update was interrupted and left pending operations",
        explanation=(
            "A previous update stopped while provider calls were in flight, so the state "
            "records operations whose outcome Pulumi cannot know. The engine refuses to "
            "continue until someone confirms what actually exists."
        ),
        remediation=(
            "Run `pulumi refresh` and accept clearing the pending operations; it reads the "
            "real resources and fixes the state.",
            "If refresh cannot resolve them, run `pulumi stack export --file state.json`, "
            "remove the entries under `pending_operations`, then `pulumi stack import --file "
            "state.json`.",
            "Check the cloud console for half-created resources and adopt them with "
            "`pulumi import` or delete them by hand.",
            "Run `pulumi up` again.",
        ),
        doc_hint="The update lifecycle",
        signals=_signals(
            r"resource\(s\) with pending operations",
            r"\bpending operations?\b",
            r"interrupted while (creat|updat|delet|read|import)ing",
        ),
    ),
    Pattern(
        key="update-conflict",
        title="Another update holds the stack",
        explanation=(
            "Only one update can run on a stack at a time, and the backend reported that "
            "another one is active (or a self-managed backend still holds its lock)."
        ),
        remediation=(
            "Wait for the other update to finish; check the stack's update history to see "
            "who started it.",
            "If the process that started it is gone, run `pulumi cancel` to end it, then "
            "retry. Cancelling a live update can leave pending operations.",
            "In CI, serialise jobs per stack so two pipelines do not update it concurrently.",
        ),
        doc_hint="The update lifecycle",
        signals=_signals(
            r"another update is (currently )?in progress",
            r"\bupdate is already in progress\b",
            r"stack is currently locked",
            r"\bconflict\b.{0,40}\bupdate\b.{0,40}\bin progress\b",
        ),
    ),
    Pattern(
        key="protected-resource",
        title="A protected resource would have been deleted",
        explanation=(
            "The resource has the `protect` option set, so Pulumi refuses to delete or "
            "replace it. The update, replacement or destroy that needed to remove it failed."
        ),
        remediation=(
            "If the deletion is intended, remove `protect: true` from the resource in code "
            "and run `pulumi up` first, or run `pulumi state unprotect '<urn>'`.",
            "If it is not intended, find the change that forces replacement in "
            "`pulumi preview --diff` and revert it, or use `ignoreChanges`.",
            "To stop managing the resource without deleting it, use `pulumi state delete` or "
            "the `retainOnDelete` option.",
        ),
        doc_hint="Resource options",
        signals=_signals(
            r"marked for protection",
            r"pulumi state unprotect",
            r"\bresource\b.{0,250}\bis protected\b",
            r"cannot be deleted because it is protected",
            r"\bprotected resources?\b.{0,60}\b(delet|replac)",
        ),
    ),
    Pattern(
        key="plugin-missing",
        title="A provider plugin could not be found or downloaded",
        explanation=(
            "The engine needs the provider's plugin binary at the version recorded in the "
            "program or the state, and it could neither find it locally nor download it."
        ),
        remediation=(
            "Run `pulumi plugin install resource <name> <version>` for the missing plugin, or "
            "`pulumi install` to fetch everything the project needs.",
            "Make sure the language dependencies are installed (`npm install`, `pip install "
            "-r requirements.txt`, `dotnet restore`) so the SDK version matches.",
            "On an air-gapped runner, mirror plugins and set `PULUMI_PLUGIN_DOWNLOAD_URL` or "
            "the package's `pluginDownloadURL`.",
            "For a plugin only the state mentions, upgrade the provider in code and run "
            "`pulumi up`, or install that exact version.",
        ),
        doc_hint="Providers and credentials",
        signals=_signals(
            r"could not (find|load) plugin",
            r"failed to (download|install|load) (the )?(\w+ )?plugin",
            r"no (resource|language|analyzer) plugin .{0,120} found",
            r"\bplugin\b.{0,80}\bnot (found|installed)\b",
            r"error installing plugin",
        ),
    ),
    Pattern(
        key="missing-config",
        title="Required configuration is missing or invalid",
        explanation=(
            "The program or a provider asked for a configuration key the stack does not "
            "define, or the stored value could not be used."
        ),
        remediation=(
            "Set the key named in the error with `pulumi config set <key> <value>` (add "
            "`--secret` for passwords and tokens) on the failing stack.",
            "Provider settings use the provider's namespace, for example `pulumi config set "
            "aws:region us-east-1`.",
            "Compare with a working stack using `pulumi config` to spot keys that were never "
            "copied to this stack.",
        ),
        doc_hint="Configuration and secrets",
        signals=_signals(
            r"missing required configuration (variable|key)",
            r"required configuration .{0,80}\bnot (set|found)\b",
            r"\bconfigmissingexception\b",
            r"please set a value using the command",
            r"invalid (value|type) for (the )?(config|configuration)",
            r"configuration key .{0,80} is not (namespaced|valid)",
        ),
    ),
    Pattern(
        key="missing-credentials",
        title="The provider could not find valid credentials",
        explanation=(
            "The provider started but found no usable credentials in the environment of the "
            "process running the update, or the ones it found have expired."
        ),
        remediation=(
            "AWS: set `AWS_PROFILE` or `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, refresh an "
            "SSO session with `aws sso login`, or configure `aws:profile` on the stack.",
            "Azure: run `az login`, or set `ARM_CLIENT_ID`, `ARM_CLIENT_SECRET` and "
            "`ARM_TENANT_ID` for a service principal (or use OIDC).",
            "Google Cloud: run `gcloud auth application-default login` or set "
            "`GOOGLE_CREDENTIALS` to a service account key.",
            "Credentials must exist where the update runs: on a Cairn agent pool, configure "
            "the agent host, not your workstation.",
        ),
        doc_hint="Providers and credentials",
        signals=_signals(
            r"\bNoCredentialProviders\b",
            r"no valid credential sources",
            r"could not find default credentials",
            r"\baz login\b",
            r"\bDefaultAzureCredential\b",
            r"\b(ExpiredToken|InvalidClientTokenId|UnrecognizedClientException)\b",
            r"unable to (load|find|locate|retrieve) (any )?credentials",
            r"failed to refresh cached credentials",
            r"application default credentials",
            r"\bAADSTS\d+",
            r"credentials? (were )?(not found|are missing|(has|have) expired)",
        ),
    ),
    Pattern(
        key="already-exists",
        title="A resource with that name already exists",
        explanation=(
            "The provider refused to create the resource because an object with the same "
            "name or identifier already exists, often left over from an earlier stack, a "
            "manual change or an interrupted update, or taken globally by someone else."
        ),
        remediation=(
            "If the existing object should be managed by this stack, adopt it with "
            "`pulumi import <type> <name> <id>` or the `import` resource option.",
            "If it is unrelated, choose another name, or drop the explicit name so Pulumi "
            "auto-names the resource with a random suffix.",
            "For globally unique names (S3 buckets, storage accounts), include the stack or "
            "account in the name.",
            "If a replacement collides with the resource it replaces, set "
            "`deleteBeforeReplace: true`.",
        ),
        doc_hint="Importing existing resources",
        signals=_signals(
            r"\bBucketAlready(Exists|OwnedByYou)\b",
            r"\bAlreadyOwnedByYou\b",
            r"\b\w*AlreadyExists\w*\b",
            r"already exists",
            r"\balready (been )?(taken|in use)\b",
            r"\bResourceExistsException\b",
        ),
    ),
    Pattern(
        key="dependency-violation",
        title="The resource is still in use by something else",
        explanation=(
            "The provider refused to delete or change the resource because other objects "
            "still depend on it, for example a security group attached to network "
            "interfaces, a subnet with running instances or a bucket that still has objects."
        ),
        remediation=(
            "Find what still uses the resource (the error usually names it) and delete or "
            "detach that first; if Pulumi manages it, add `dependsOn` so it is removed first.",
            "If the dependent object was created outside Pulumi, delete it by hand or "
            "`pulumi import` it so Pulumi can order the deletion.",
            "For buckets that must be emptied, set `forceDestroy: true` and run `pulumi up` "
            "before destroying.",
            "Some dependents (load balancer interfaces, Lambda ENIs) disappear on their own "
            "after a few minutes; wait and rerun `pulumi destroy`.",
        ),
        doc_hint="Resource options",
        signals=_signals(
            r"\bDependencyViolation\b",
            r"\bResourceInUse\w*\b",
            r"\bInUse\w*CannotBeDeleted\b",
            r"\bresource\b.{0,200}\bis (currently |still )?in use\b",
            r"\b(is|are) (currently |still )?in use by\b",
            r"\bhas (a )?dependent (object|resource)s?\b",
            r"cannot be deleted (because|as|while|since)",
            r"\bBucketNotEmpty\b",
            r"\bis still (referenced|attached|associated)\b",
        ),
    ),
    Pattern(
        key="throttled",
        title="The cloud API throttled the requests",
        explanation=(
            "The provider sent requests faster than the cloud API allows, and the API kept "
            "rejecting them after the provider's retries ran out."
        ),
        remediation=(
            "Rerun the update; throttling is usually transient.",
            "Lower concurrency with `pulumi up --parallel 4` (or smaller) for large stacks.",
            "Check whether other automation in the same account is using up the API budget.",
        ),
        doc_hint="The update lifecycle",
        signals=_signals(
            r"\bThrottl(ing|ed)\w*\b",
            r"\brate exceeded\b",
            r"\bRequestLimitExceeded\b",
            r"\bTooManyRequests\b",
            r"\brate limit(ed)?\b",
            r"(?<![\w.-])429(?![\w.-])",
        ),
    ),
    Pattern(
        key="quota-exceeded",
        title="A quota or service limit was reached",
        explanation=(
            "The account, subscription or project has hit a limit on how many of these "
            "resources (or how much capacity) it may use."
        ),
        remediation=(
            "Check the service's quota page for the limit named in the error and request an "
            "increase if the usage is expected.",
            "Delete unused resources of the same kind, such as stacks nobody destroyed, "
            "unattached IP addresses or idle clusters.",
            "Deploy into another region or a smaller size if the limit is regional or per-family.",
        ),
        doc_hint="Providers and credentials",
        signals=_signals(
            r"\b\w*LimitExceeded\w*\b",
            r"\b\w*QuotaExceeded\w*\b",
            r"\bquota\b",
            r"exceed\w* (the |your )?(maximum|limit|allowed)",
            r"\bTooMany(Buckets|\w+s)\b",
            r"\bmaximum number of\b",
        ),
    ),
    Pattern(
        key="region-unavailable",
        title="The region, zone or SKU is not available",
        explanation=(
            "The requested location cannot host this resource: the service or size is not "
            "offered there, the region is not enabled for the account, or it has no "
            "capacity right now."
        ),
        remediation=(
            "Check the region setting on the stack (`aws:region`, `azure-native:location`, "
            "`gcp:region`) and the location properties on the resource.",
            "Pick a region, zone or instance size that offers the service; list the options "
            "with the cloud's CLI.",
            "For opt-in regions, enable the region on the account first.",
            "For capacity errors, retry later or spread the resource over other zones.",
        ),
        doc_hint="Providers and credentials",
        signals=_signals(
            r"\bLocationNotAvailableForResourceType\b",
            r"\bNoRegisteredProviderFound\b",
            r"\bSkuNotAvailable\b",
            r"\b(InvalidLocation|InvalidAvailabilityZone|InsufficientInstanceCapacity)\b",
            r"\bOptInRequired\b",
            r"\b(region|location|zone)\b.{0,80}\bnot (supported|available|enabled|valid)\b",
            r"unsupported (region|location|availability zone)",
            r"\bZONE_RESOURCE_POOL_EXHAUSTED\w*\b",
        ),
    ),
    Pattern(
        key="invalid-name",
        title="The name breaks the provider's naming rules",
        explanation=(
            "The cloud API rejected the resource's name: it has characters, case or length "
            "the service does not allow."
        ),
        remediation=(
            "Read the naming rule in the error (lowercase only, allowed characters, length) "
            "and change the name property or the logical name it is derived from.",
            "Remember auto-naming appends a random suffix (about 8 characters), so leave room "
            "under the length limit or set the name explicitly.",
            "If the name is built from other values, make sure they are resolved with `apply` "
            "rather than converted to strings.",
        ),
        doc_hint="Resource naming and transformations",
        signals=_signals(
            r"\bInvalid\w*Name\b",
            r"\b\w*NameInvalid\b",
            r"\binvalid (resource |bucket |account )?name\b",
            r"\bname\b.{0,120}\b(must|can only|may only|should) (be|contain|consist|start|begin"
            r"|end|only|match)\b",
            r"must be (all )?lower ?case",
            r"\bonly lower ?case\b",
            r"\bname\b.{0,80}\b(too long|exceeds)",
        ),
    ),
    Pattern(
        key="permission-denied",
        title="The credentials lack permission for this action",
        explanation=(
            "The provider authenticated but the identity it used is not allowed to perform "
            "the operation on this resource."
        ),
        remediation=(
            "Identify the identity in use (`aws sts get-caller-identity`, `az account show`, "
            "`gcloud auth list`) and confirm it is the one you expect.",
            "Grant the missing action named in the error to that role, user or service "
            "principal, or assume a role that has it through an explicit provider.",
            "Look for organisation-level guardrails (SCPs, Azure Policy, org policies) that "
            "deny the action even when the role allows it.",
        ),
        doc_hint="Providers and credentials",
        signals=_signals(
            r"\bAccessDenied\w*\b",
            r"\bAuthorizationFailed\b",
            r"\bUnauthorizedOperation\b",
            r"permission denied",
            r"\bnot authorized\b",
            r"\bdoes not have (the )?(required )?(permission|authorization)",
            r"insufficient (permissions|privileges)",
            r"\bPERMISSION_DENIED\b",
            r"\bForbidden\b",
            r"(?<![\w.-])403(?![\w.-])",
        ),
    ),
    Pattern(
        key="timeout",
        title="The operation timed out",
        explanation=(
            "The provider waited for the resource to reach the expected state and gave up "
            "before it did. The resource may still be converging, or be stuck in a failed "
            "state in the cloud."
        ),
        remediation=(
            "Look at the resource in the cloud console to see whether it is still "
            "progressing or has failed, and why.",
            "Run `pulumi refresh` so the state matches what exists, then `pulumi up` again.",
            "If the operation is just slow, raise the limit with the `customTimeouts` "
            "resource option.",
        ),
        doc_hint="Resource options",
        signals=_signals(
            r"timeout while waiting for (state|resource)",
            r"\btimed out\b",
            r"context deadline exceeded",
            r"\bDeadlineExceeded\b",
            r"exceeded (the )?timeout",
            r"\btimeout\b.{0,40}\b(waiting|exceeded|expired)\b",
        ),
    ),
)

GENERIC_PATTERN = Pattern(
    key="unrecognised",
    title="An error Cairn does not recognise",
    explanation=(
        "The failure does not match any known cause, so the provider's own message is the "
        "best guide."
    ),
    remediation=(
        "Read the full error for the resource; the provider's message usually names the "
        "property or API call at fault.",
        "Run `pulumi preview --diff` to see exactly which properties the update tried to change.",
        "Check the provider's documentation for the resource type and the property values "
        "it accepts.",
        "If the state may be out of date, run `pulumi refresh` before retrying, and rerun "
        "with `--debug` for more detail.",
    ),
    doc_hint="The update lifecycle",
)


def match_pattern(text: str) -> Pattern | None:
    """The highest-priority known pattern matching `text`, or None."""
    return next((pattern for pattern in PATTERNS if pattern.key_line(text) is not None), None)


def clean_message(message: str) -> str:
    """A diagnostic's text without colour directives and surrounding whitespace."""
    return _COLOR_DIRECTIVE.sub("", message).strip()


def urn_name(urn: str) -> str:
    """The logical name at the end of a URN (the whole string if it is not a URN)."""
    parts = urn.split("::", 3)
    return parts[3] if len(parts) == 4 else urn


def urn_type(urn: str) -> str:
    """The resource type in a URN, without its parent chain."""
    parts = urn.split("::", 3)
    return parts[2].rsplit("$", 1)[-1] if len(parts) == 4 else ""


def ordered_events(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Events by sequence number, duplicates (retried batches) dropped, unnumbered ones last."""
    numbered: dict[int, Mapping[str, Any]] = {}
    unnumbered: list[Mapping[str, Any]] = []
    for event in events:
        sequence = event.get("sequence")
        if isinstance(sequence, int) and not isinstance(sequence, bool):
            numbered.setdefault(sequence, event)
        else:
            unnumbered.append(event)
    return [numbered[sequence] for sequence in sorted(numbered)] + unnumbered


@dataclass
class _FailureDraft:
    urn: str
    type: str = ""
    op: str = ""
    messages: list[str] = field(default_factory=list)
    has_failed_step: bool = False


def diagnose(events: Sequence[Mapping[str, Any]]) -> Diagnosis:
    """Fold an update's engine events into its outcome, failures and likely causes."""
    drafts: dict[str, _FailureDraft] = {}
    steps: dict[str, tuple[str, str]] = {}
    general_errors: list[str] = []
    result: str | None = None
    is_cancelled = False
    changes: dict[str, int] = {}

    for event in ordered_events(events):
        if pre := _member(event, "resourcePreEvent"):
            metadata = _member(pre, "metadata")
            if urn := _text(metadata, "urn"):
                steps[urn] = (_text(metadata, "op"), _text(metadata, "type"))
        elif failed := _member(event, "resOpFailedEvent"):
            metadata = _member(failed, "metadata")
            if urn := _text(metadata, "urn"):
                draft = drafts.setdefault(urn, _FailureDraft(urn))
                draft.has_failed_step = True
                draft.op = _text(metadata, "op") or draft.op
                draft.type = _text(metadata, "type") or draft.type
        elif diagnostic := _member(event, "diagnosticEvent"):
            if _text(diagnostic, "severity") != "error":
                continue
            message = clean_message(_text(diagnostic, "message"))
            if not message:
                continue
            urn = _text(diagnostic, "urn")
            if not urn or urn_type(urn) == STACK_RESOURCE_TYPE:
                _append_once(general_errors, message)
            else:
                _append_once(drafts.setdefault(urn, _FailureDraft(urn)).messages, message)
        elif error := _member(event, "errorEvent"):
            if message := clean_message(_text(error, "error")):
                _append_once(general_errors, message)
        elif "cancelEvent" in event:
            is_cancelled = True
        elif summary := _member(event, "summaryEvent"):
            result = _text(summary, "result") or result
            changes = _changes(_member(summary, "resourceChanges"))

    failures = tuple(_finish(draft, steps.get(draft.urn, ("", ""))) for draft in drafts.values())
    if result is not None:
        succeeded = result == "succeeded" and not failures
    else:
        succeeded = not (failures or general_errors or is_cancelled)
    return Diagnosis(
        succeeded=succeeded,
        failures=failures,
        general_errors=tuple(general_errors),
        matches=_matches(failures, general_errors, succeeded),
        summary_changes=MappingProxyType(changes),
    )


def _finish(draft: _FailureDraft, step: tuple[str, str]) -> Failure:
    op, resource_type = step
    return Failure(
        urn=draft.urn,
        type=draft.type or resource_type or urn_type(draft.urn),
        op=draft.op or op or "unknown",
        messages=tuple(draft.messages),
    )


def _matches(
    failures: Sequence[Failure], general_errors: Sequence[str], succeeded: bool
) -> tuple[tuple[Failure | None, Pattern], ...]:
    matches: list[tuple[Failure | None, Pattern]] = [
        (failure, match_pattern("\n".join(failure.messages)) or GENERIC_PATTERN)
        for failure in failures
    ]
    seen = {pattern.key for _, pattern in matches}
    for message in general_errors:
        pattern = match_pattern(message)
        if pattern is not None and pattern.key not in seen:
            seen.add(pattern.key)
            matches.append((None, pattern))
    if not matches and not succeeded:
        matches.append((None, GENERIC_PATTERN))
    return tuple(matches)


def explain(diagnosis: Diagnosis, stack: str, version: int) -> str:
    """A markdown account of what failed, why, and how to resolve it."""
    changes = _describe_changes(diagnosis.summary_changes)
    if diagnosis.succeeded:
        detail = f": {changes}" if changes else ""
        return (
            f"The update to stack `{stack}` (version {version}) succeeded{detail}. Nothing to fix."
        )

    count = len(diagnosis.failures)
    headline = f"The update to stack `{stack}` (version {version}) failed."
    if count:
        headline += f" {count} resource{'s' if count != 1 else ''} failed."
    if changes:
        headline += f" Resource changes recorded: {changes}."
    sections = [headline]
    for pattern, failures in _group_by_pattern(diagnosis.matches):
        sections.append(_explain_pattern(pattern, failures, diagnosis.general_errors))
    others = [line for line in diagnosis.general_errors if not _is_explained(line, diagnosis)]
    if others:
        sections.append(
            "**Other errors reported by the engine:**\n"
            + "\n".join(f"> {_quote(line)}" for line in others)
        )
    return "\n\n".join(sections)


def _group_by_pattern(
    matches: Sequence[tuple[Failure | None, Pattern]],
) -> list[tuple[Pattern, list[Failure]]]:
    groups: dict[str, tuple[Pattern, list[Failure]]] = {}
    for failure, pattern in matches:
        _, failures = groups.setdefault(pattern.key, (pattern, []))
        if failure is not None:
            failures.append(failure)
    return list(groups.values())


def _explain_pattern(
    pattern: Pattern, failures: Sequence[Failure], general_errors: Sequence[str]
) -> str:
    lines = [f"### {pattern.title}"]
    if failures:
        lines.append("**What failed:**")
        lines.extend(f"- `{urn_name(f.urn)}` ({f.type}, {f.op}): `{f.urn}`" for f in failures)
    else:
        lines.append("**What failed:** the program itself, before or outside any one resource.")
    texts = [m for f in failures for m in f.messages] or list(general_errors)
    quoted = _key_quote(pattern, texts)
    why = f"**Why:** {pattern.explanation}"
    if quoted:
        why += f" The key error line:\n> {_quote(quoted)}"
    lines.extend(["", why, "", "**How to resolve the issue:**"])
    lines.extend(f"- {step}" for step in pattern.remediation)
    lines.append(f"- For background, see the **{pattern.doc_hint}** concept.")
    return "\n".join(lines)


def _key_quote(pattern: Pattern, texts: Sequence[str]) -> str:
    for text in texts:
        if line := pattern.key_line(text):
            return line
    # The generic pattern has no signals: quote the first substantive line instead.
    for text in texts:
        for line in text.splitlines():
            if line.strip() and not _NOISE.match(line.strip()):
                return line.strip()
    return ""


def _is_explained(line: str, diagnosis: Diagnosis) -> bool:
    """Whether a general error is noise or already quoted under a program-level pattern."""
    if _NOISE.match(line):
        return True
    return any(
        failure is None and pattern.key_line(line) is not None
        for failure, pattern in diagnosis.matches
    )


def _describe_changes(changes: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in changes.items() if count)


def _quote(line: str) -> str:
    line = " ".join(line.split())
    return line if len(line) <= MAX_QUOTE_LENGTH else line[: MAX_QUOTE_LENGTH - 1] + "…"


def _append_once(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


def _member(container: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = container.get(key)
    return value if isinstance(value, Mapping) else {}


def _text(container: Mapping[str, Any], key: str) -> str:
    value = container.get(key)
    return value if isinstance(value, str) else ""


def _changes(raw: Mapping[str, Any]) -> dict[str, int]:
    return {
        kind: count
        for kind, count in raw.items()
        if isinstance(count, int) and not isinstance(count, bool)
    }
