"""The agent masks its job's secrets before any line leaves it."""

from __future__ import annotations

from services.agent.worker import Job
from services.common.auth import new_token


def test_a_job_masks_its_settings_secrets_and_its_token() -> None:
    token = new_token()
    job = Job(
        deployment_id="d",
        operation="update",
        stack="acme/web/dev",
        version=1,
        settings={"operationContext": {"environmentVariables": {"DB": "s3cr3t-pw"}}},
        environment={"PULUMI_ACCESS_TOKEN": token, "PULUMI_BACKEND_URL": "http://x"},
        secrets=("s3cr3t-pw",),
    )
    lines = ["db=s3cr3t-pw", f"token={token}", "backend=http://x", "half s3cr", "3t-pw"]
    assert job.masker.lines(lines) == [
        "db=[secret]",
        "token=[secret]",
        "backend=http://x",
        "half [secret]",
        "[secret]",
    ]
    assert job.mask(f"failed with {token} and s3cr3t-pw") == "failed with [secret] and [secret]"
    # Neither the secrets nor the token show in the job's repr (it may be logged).
    assert "s3cr3t-pw" not in repr(job) and token not in repr(job)


def test_a_value_continued_after_a_sent_batch_is_masked_in_the_next() -> None:
    job = Job("d", "update", "acme/web/dev", 1, {}, secrets=("s3cr3t-pw",))
    assert job.masker.lines(["3t-pw rest"], "first batch ends s3cr") == ["[secret] rest"]
