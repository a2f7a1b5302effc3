"""deploy/kubernetes renders with `kubectl kustomize`, every manifest is valid against the
Kubernetes schemas (kubernetes-validate bundles them, so no cluster and no network), and the
manifests agree with docker-compose.yml and the code: the same services, ports and settings.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.config import DEFAULT_SERVICE_PORTS, SERVICE_NAMES, Settings
from services.common.readiness import LIVENESS_HEALTH_NAME
from tests.contract.test_compose import COMPOSE_FILE, cairn_services, compose_name, environment

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes the manifests are for (gRPC probes are GA since 1.27).
KUBERNETES_VERSION = "1.30.0"
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed (Debian: apt-get install kubernetes-client)"
)


def _fill(env_file: Path) -> None:
    """Write an installation's env file from its example, with fresh keys where they are empty."""
    lines = []
    for line in env_file.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#") and not value and name.endswith("_KEY"):
            value = base64.b64encode(os.urandom(32)).decode("ascii")
        lines.append(f"{name}{sep}{value}" if sep else line)
    env_file.with_suffix("").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _render(tree: Path, target: str) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "kustomize", str(tree / target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Both kustomizations, rendered from a copy whose secret env files are filled in."""
    tree = tmp_path_factory.mktemp("kubernetes") / "kubernetes"
    shutil.copytree(KUBERNETES, tree)
    secrets = tree / "overlays" / "ha" / "secrets"
    for filled in secrets.glob("*.env"):
        filled.unlink()  # an installation's own, left in the working tree
    for example in secrets.glob("*.env.example"):
        _fill(example)
    yield {"base": _render(tree, "base"), "ha": _render(tree, "overlays/ha")}


def _of(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _env_names(docs: list[dict[str, Any]], workload: dict[str, Any]) -> set[str]:
    """Every variable a workload's container gets: its own and those of the maps it loads."""
    container = _container(workload)
    names = {entry["name"] for entry in container.get("env", [])}
    maps = {**_of(docs, "ConfigMap"), **_of(docs, "Secret")}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        found = maps.get(ref["name"])
        if found is None:
            assert ref.get("optional"), f"{ref['name']} is neither rendered nor optional"
            continue
        names |= set(found.get("data", {})) | set(found.get("stringData", {}))
    return names


@pytest.mark.parametrize("target", ["base", "ha"])
def test_every_manifest_is_valid_against_the_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = rendered[target]
    assert len(docs) > 10
    for doc in docs:
        # Strict: a misspelt or misplaced field fails instead of being dropped by the server.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_catches_a_misplaced_field(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    broken = dict(_of(rendered["ha"], "Deployment")["gateway"])
    broken["spec"] = {**broken["spec"], "replica": 2}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_same_services_as_compose_on_the_same_ports(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    docs = rendered["ha"]
    deployments = _of(docs, "Deployment")
    services = _of(docs, "Service")
    expected = {compose_name(name) for name in SERVICE_NAMES} | {"gateway"}
    assert set(deployments) == expected
    assert set(cairn_services(compose)) - {"migrate"} == expected
    for name in SERVICE_NAMES:
        port = DEFAULT_SERVICE_PORTS[name]
        container = _container(deployments[compose_name(name)])
        assert container["args"] == ["serve", name]
        env = {entry["name"]: entry.get("value") for entry in container["env"]}
        assert env["CAIRN_GRPC_PORT"] == str(port)
        # Readiness on the gRPC health check; liveness on the name that ignores dependencies.
        assert container["readinessProbe"]["grpc"] == {"port": port}
        assert container["livenessProbe"]["grpc"] == {"port": port, "service": LIVENESS_HEALTH_NAME}
        service = services[compose_name(name)]
        # Headless, so gRPC's DNS resolver sees (and balances over) every replica.
        assert service["spec"]["clusterIP"] == "None"
        assert {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"] == port
    config = next(iter(_of(docs, "ConfigMap").values()))["data"]
    for name in SERVICE_NAMES:
        address = config[f"CAIRN_{name.upper()}_ADDRESS"]
        assert address == f"{compose_name(name)}:{DEFAULT_SERVICE_PORTS[name]}"
    # State must live in shared object storage: the pods' data dir is an emptyDir.
    assert config["CAIRN_BLOB_URL"].startswith("s3://")
    gateway = _container(deployments["gateway"])
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/livez"


def test_every_compose_setting_reaches_the_same_pod(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    docs = rendered["ha"]
    deployments = _of(docs, "Deployment")
    settings = {f"CAIRN_{name.upper()}" for name in Settings.model_fields}
    for name, service in cairn_services(compose).items():
        wanted = set(environment(service))
        if name == "migrate":
            # Migrations call no service, so the Job is not given the key that signs calls.
            wanted.discard("CAIRN_INTERNAL_KEY")
        workload = _of(docs, "Job")["migrate"] if name == "migrate" else deployments[name]
        got = _env_names(docs, workload)
        assert wanted <= got, f"{name} lacks {sorted(wanted - got)}"
        # Nothing the code would not read.
        assert {n for n in got if n.startswith("CAIRN_")} <= settings, name
    # Only the secrets service holds the master key.
    holders = {n for n, d in deployments.items() if "CAIRN_MASTER_KEY" in _env_names(docs, d)}
    assert holders == {"secrets"}


def test_ha_runs_two_gateways_and_two_updates_with_disruption_budgets(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["ha"]
    replicas = {name: d["spec"]["replicas"] for name, d in _of(docs, "Deployment").items()}
    assert replicas["gateway"] == 2 and replicas["updates"] == 2
    budgets = _of(docs, "PodDisruptionBudget")
    assert {
        name: b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for name, b in budgets.items()
    } == {"gateway": "gateway", "updates": "updates"}
    assert all(b["spec"]["minAvailable"] == 1 for b in budgets.values())
    # Every generated Secret the pods name exists, with no key left empty.
    secrets = _of(docs, "Secret")
    for name in ("cairn-internal-key", "cairn-master-key", "cairn-console-session-key"):
        (found,) = [s for n, s in secrets.items() if n.startswith(name + "-")]
        assert all(base64.b64decode(v) for v in found["data"].values())


def test_network_policies_admit_only_gateway_to_services_and_services_to_services(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["ha"]
    policies = _of(docs, "NetworkPolicy")
    deny = policies["cairn-default-deny-ingress"]["spec"]
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    services = policies["cairn-services-ingress"]["spec"]
    assert services["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "service"
    (rule,) = services["ingress"]
    (peer,) = rule["from"]
    components = {
        tuple(e["values"])
        for e in peer["podSelector"]["matchExpressions"]
        if e["key"] == "app.kubernetes.io/component"
    }
    assert components == {("gateway", "service")}
    assert sorted(p["port"] for p in rule["ports"]) == sorted(DEFAULT_SERVICE_PORTS.values())
    # Every pod carries the labels the policies select on; the Job none that admits traffic.
    for name, deployment in _of(docs, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "cairn", name
        assert labels["app.kubernetes.io/component"] in {"gateway", "service"}, name
    job_labels = _of(docs, "Job")["migrate"]["spec"]["template"]["metadata"]["labels"]
    assert job_labels["app.kubernetes.io/component"] == "migrate"


def test_memory_is_requested_and_limited_everywhere(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["ha"]
    workloads = [*_of(docs, "Deployment").values(), *_of(docs, "Job").values()]
    for workload in workloads:
        resources = _container(workload)["resources"]
        assert resources["requests"]["memory"] and resources["limits"]["memory"]
        assert resources["requests"]["cpu"]
