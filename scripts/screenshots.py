"""Screenshots of the web console's main pages, for the README.

Starts `cairn up` on a free loopback port in a temporary data directory, records a few stacks
and updates through the REST API the way the Pulumi CLI does, and photographs the pages in
the system's headless Chromium (the browser tests' setup):

    .venv/bin/python scripts/screenshots.py [--out docs/console]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.console.data import SECRETS, create_stack, secret, set_tags  # noqa: E402
from tests.console.live import browser_problem, cairn_up, chromium, rest_client  # noqa: E402
from tests.gateway.cli import begin, stack_urn  # noqa: E402
from tests.gateway.conftest import ADMIN_TOKEN, Cairn  # noqa: E402

PROVIDER = "urn:pulumi:prod::shop::pulumi:providers:aws::default_6_50_0"
ROLE = "urn:pulumi:prod::shop::aws:iam/role:Role::site-deployer"
BUCKET = "urn:pulumi:prod::shop::aws:s3/bucket:Bucket::site-assets"
POLICY = "urn:pulumi:prod::shop::aws:s3/bucketPolicy:BucketPolicy::site-assets-public"
CDN = "urn:pulumi:prod::shop::aws:cloudfront/distribution:Distribution::site-cdn"
FAILURE = (
    "creating S3 Bucket Policy (site-assets): AccessDenied: public policies are blocked by "
    "the account's Block Public Access settings"
)


def state(urn: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"urn": urn, "type": type_, "custom": True, "id": urn.rsplit("::", 1)[1], **extra}


def shop_resources(with_policy: bool) -> list[dict[str, Any]]:
    root = stack_urn("shop", "prod")
    provider = f"{PROVIDER}::7c1e0f2a"
    found: list[dict[str, Any]] = [
        {
            "urn": root,
            "type": "pulumi:pulumi:Stack",
            "custom": False,
            "outputs": {
                "siteUrl": "https://d1x2y3.cloudfront.net",
                "bucketName": "site-assets-4f1c2d",
                "deployKey": secret("AKIA-not-a-real-key"),
            },
        },
        state(PROVIDER, "pulumi:providers:aws", inputs={"region": "eu-west-1"}),
        state(
            ROLE,
            "aws:iam/role:Role",
            parent=root,
            provider=provider,
            inputs={"assumeRolePolicy": '{"Version":"2012-10-17"}'},
            outputs={"arn": "arn:aws:iam::123456789012:role/site-deployer"},
        ),
        state(
            BUCKET,
            "aws:s3/bucket:Bucket",
            parent=root,
            provider=provider,
            dependencies=[ROLE],
            inputs={"bucket": "site-assets-4f1c2d", "forceDestroy": False},
            outputs={
                "arn": "arn:aws:s3:::site-assets-4f1c2d",
                "bucket": "site-assets-4f1c2d",
                "region": "eu-west-1",
                "tags": {"team": "storefront"},
            },
        ),
        state(
            CDN,
            "aws:cloudfront/distribution:Distribution",
            parent=root,
            provider=provider,
            dependencies=[BUCKET],
            inputs={"enabled": True, "origins": [{"domainName": "site-assets-4f1c2d.s3"}]},
            outputs={"domainName": "d1x2y3.cloudfront.net", "status": "Deployed"},
        ),
    ]
    if with_policy:
        found.append(state(POLICY, "aws:s3/bucketPolicy:BucketPolicy", parent=root))
    return found


def pre(op: str, urn: str, kind: str = "resourcePreEvent") -> dict[str, Any]:
    return {kind: {"metadata": {"op": op, "urn": urn, "type": urn.split("::")[2]}}}


async def seed(cairn: Cairn) -> None:
    path = await create_stack(cairn, "shop", "prod")
    first = await begin(cairn, path, message="Initial storefront")
    first.resources = shop_resources(with_policy=False)
    await first.full_checkpoint(SECRETS)
    events: list[dict[str, Any]] = [{"preludeEvent": {"config": {}}}]
    for urn in (ROLE, BUCKET, CDN):
        events += [pre("create", urn), pre("create", urn, "resOutputsEvent")]
    events.append({"summaryEvent": {"resourceChanges": {"create": 5}, "durationSeconds": 94}})
    await first.send_events(events)
    await first.complete()

    second = await begin(cairn, path, message="Open the bucket to the CDN")
    second.resources = shop_resources(with_policy=False)
    await second.full_checkpoint(SECRETS)
    await second.send_events(
        [
            {"preludeEvent": {"config": {}}},
            pre("same", ROLE),
            pre("same", BUCKET),
            pre("create", POLICY),
            {
                "diagnosticEvent": {
                    "urn": POLICY,
                    "prefix": "error: ",
                    "message": FAILURE + "\n",
                    "severity": "error",
                    "color": "raw",
                }
            },
            pre("create", POLICY, "resOpFailedEvent"),
            {
                "diagnosticEvent": {
                    "message": "update failed\n",
                    "severity": "error",
                    "color": "raw",
                }
            },
            {"summaryEvent": {"resourceChanges": {"same": 4}, "durationSeconds": 12}},
        ]
    )
    await second.complete("failed")
    await set_tags(cairn, path, team="storefront", env="prod", **{"pulumi:project": "shop"})
    for project, stack in (("shop", "staging"), ("billing", "prod"), ("billing", "dev")):
        other = await create_stack(cairn, project, stack)
        run = await begin(cairn, other, message="routine deploy")
        run.resources = [{"urn": stack_urn(project, stack), "type": "pulumi:pulumi:Stack"}]
        await run.full_checkpoint(SECRETS)
        await run.send_events([{"summaryEvent": {"resourceChanges": {"create": 1}}}])
        await run.complete()
    await cairn.json(
        "POST",
        "/api/orgs/admin/teams/pulumi",
        body={
            "name": "storefront",
            "displayName": "Storefront",
            "description": "Owns the shop's site and CDN",
        },
    )
    for project, stack, permission in (("shop", "prod", 102), ("shop", "staging", 103)):
        grant = {"projectName": project, "stackName": stack, "permission": permission}
        await cairn.json(
            "PATCH",
            "/api/orgs/admin/teams/storefront",
            status=204,
            body={"addStackPermission": grant},
        )
    # A refused call, for the audit log.
    refused = await cairn.call(
        "DELETE", "/api/stacks/admin/billing/prod", token="pul-revoked-token"
    )
    assert refused.status == 401


async def photograph(url: str, out: Path) -> list[Path]:
    shots = [
        ("stack-list.png", "/orgs/admin", 1280),
        ("stack.png", "/orgs/admin/shop/prod", 1280),
        ("update-diagnostic.png", "/orgs/admin/shop/prod/updates/2", 1280),
        ("resource.png", f"/orgs/admin/shop/prod/resource?urn={quote(BUCKET, safe='')}", 1280),
        ("stack-phone.png", "/orgs/admin/shop/prod", 390),
        ("audit.png", "/orgs/admin/audit", 1280),
    ]
    written: list[Path] = []
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        await page.goto(f"{url}/signin")
        await page.fill("#token", ADMIN_TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_selector("h1:text('Organizations')")
        for name, path, width in shots:
            await page.set_viewport_size({"width": width, "height": 800})
            await page.goto(url + path)
            await page.wait_for_load_state("networkidle")
            target = out / name
            await page.screenshot(path=str(target), full_page=True)
            written.append(target)
        await context.close()
    return written


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    args = parser.parse_args()
    problem = browser_problem()
    if problem:
        print(f"screenshots: {problem}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data_dir:
        async with cairn_up(Path(data_dir)) as url:
            async with rest_client(url) as cairn:
                await seed(cairn)
            for path in await photograph(url, args.out):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
