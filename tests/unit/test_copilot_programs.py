"""Copilot program generation: request parsing, all 125 programs, and the syntax checks."""

from __future__ import annotations

import ast
import itertools
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from services.copilot.programs import (
    CLOUDS,
    LANGUAGES,
    GeneratedProgram,
    ProgramRequest,
    check_syntax,
    follow_up_request,
    generate,
    parse_request,
)
from services.copilot.programs.spec import PROGRAMS

PHRASINGS = [
    # The seed's own example.
    ("Write code to create an S3 bucket", "bucket", "aws", "typescript"),
    ("Generate a Python program for an Azure virtual network", "network", "azure", "python"),
    ("create a GCS bucket in Go", "bucket", "gcp", "go"),
    ("I need a Postgres database on GCP in C#", "database", "gcp", "csharp"),
    ("static website on azure with yaml", "website", "azure", "yaml"),
    ("Show me typescript for an EKS container service", "container", "aws", "typescript"),
    ("Show me typescript for an ECS container service", "container", "aws", "typescript"),
    ("Show me typescript for a Cloud Run container service", "container", "gcp", "typescript"),
    ("Show me typescript for an AKS container service", "container", "azure", "typescript"),
    ("Create a Route 53 DNS record", "dns", "aws", "typescript"),
    ("Write a Cloud DNS record in python", "dns", "gcp", "python"),
    ("Set up an Azure DNS record using C#", "dns", "azure", "csharp"),
    ("Deploy an EC2 instance", "vm", "aws", "typescript"),
    ("Create a VM", "vm", "aws", "typescript"),
    ("Spin up a Compute Engine instance with golang", "vm", "gcp", "go"),
    ("Generate a Pulumi program for a virtual machine on Azure in C#", "vm", "azure", "csharp"),
    ("Create a VPC in Python", "network", "aws", "python"),
    ("Give me a VNet in .NET", "network", "azure", "csharp"),
    ("Provision an RDS database", "database", "aws", "typescript"),
    ("Create a Cloud SQL instance", "database", "gcp", "typescript"),
    ("Write an Azure SQL database in TypeScript", "database", "azure", "typescript"),
    ("Deploy a MySQL db with javascript", "database", "aws", "typescript"),
    ("Deploy a container on Fargate", "container", "aws", "typescript"),
    ("Run a container on Azure Container Apps", "container", "azure", "typescript"),
    ("Create Azure Container Instances in YAML", "container", "azure", "yaml"),
    ("Make a storage account in dotnet", "bucket", "azure", "csharp"),
    ("Create a blob container on Azure", "bucket", "azure", "typescript"),
    ("Create a Google Cloud Storage bucket", "bucket", "gcp", "typescript"),
    ("Host a static site on S3", "website", "aws", "typescript"),
    ("Create an EC2 instance in a new VPC", "vm", "aws", "typescript"),
    ("How do I create a bucket on Google Cloud with Python?", "bucket", "gcp", "python"),
    ("Add a DNS zone for my domain on GCP", "dns", "gcp", "typescript"),
    ("deploy a docker container to google cloud", "container", "gcp", "typescript"),
    ("Write a Go program that creates a database on Azure", "database", "azure", "go"),
    ("Kubernetes nginx deployment", "app", "kubernetes", "typescript"),
    ("Deploy nginx to k8s in Go", "app", "kubernetes", "go"),
    ("Create a Kubernetes namespace in C#", "namespace", "kubernetes", "csharp"),
    ("Install nginx with a Helm chart on Kubernetes", "helm", "kubernetes", "typescript"),
    ("k8s configmap and secret in yaml", "config", "kubernetes", "yaml"),
]

NON_REQUESTS = [
    "What is a stack?",
    "What is an S3 bucket?",
    "Why did my last update fail?",
    "Who are the users in my org?",
    "How much does a Cloud SQL database cost?",
    "Delete the S3 bucket in my dev stack",
    "Why do I need a VPC?",
    "Explain ECS vs EKS",
    "What is Cloud Run?",
    "List my stacks",
    "What is a Kubernetes namespace?",
    "Resources of type kubernetes deployment across stacks",
    "Which stacks have secrets?",
    "",
]

ALL_REQUESTS = [
    ProgramRequest(resource, cloud, language)
    for (resource, cloud), language in itertools.product(PROGRAMS, LANGUAGES)
]

# How each language's program names the cloud's provider package.
PROVIDER_MARKERS = {
    ("typescript", "aws"): '"@pulumi/aws"',
    ("typescript", "azure"): '"@pulumi/azure-native/',
    ("typescript", "gcp"): '"@pulumi/gcp"',
    ("python", "aws"): "import pulumi_aws as aws",
    ("python", "azure"): "from pulumi_azure_native import",
    ("python", "gcp"): "import pulumi_gcp as gcp",
    ("go", "aws"): '"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/',
    ("go", "azure"): '"github.com/pulumi/pulumi-azure-native-sdk/',
    ("go", "gcp"): '"github.com/pulumi/pulumi-gcp/sdk/v8/go/gcp/',
    ("csharp", "aws"): "using Aws = Pulumi.Aws;",
    ("csharp", "azure"): "using AzureNative = Pulumi.AzureNative;",
    ("csharp", "gcp"): "using Gcp = Pulumi.Gcp;",
    ("typescript", "kubernetes"): 'import * as k8s from "@pulumi/kubernetes";',
    ("python", "kubernetes"): "import pulumi_kubernetes as k8s",
    ("go", "kubernetes"): '"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/',
    ("csharp", "kubernetes"): "using Kubernetes = Pulumi.Kubernetes;",
}
PACKAGES = {"aws": "aws", "azure": "azure-native", "gcp": "gcp", "kubernetes": "kubernetes"}
LOCATION_KEYS = {
    "aws": "aws:region",
    "azure": "azure-native:location",
    "gcp": "gcp:project",
    "kubernetes": "kubernetes:context",
}
# The nginx Deployment as each Kubernetes SDK spells it.
KUBERNETES_DEPLOYMENT = {
    "typescript": [
        "new k8s.apps.v1.Deployment(",
        "new k8s.core.v1.Service(",
        'matchLabels: { app: "nginx" }',
    ],
    "python": [
        "k8s.apps.v1.Deployment(",
        "    metadata={",
        "    spec={",
        '"match_labels": {"app": "nginx"}',
    ],
    "go": [
        'appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"',
        'metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"',
        'appsv1.NewDeployment(ctx, "nginx", &appsv1.DeploymentArgs{',
        "Spec: &appsv1.DeploymentSpecArgs{",
        "Metadata: &metav1.ObjectMetaArgs{",
        "Template: &corev1.PodTemplateSpecArgs{",
        "Containers: corev1.ContainerArray{",
        "corev1.NewService(",
    ],
    "csharp": [
        'new Kubernetes.Apps.V1.Deployment("nginx"',
        "new Kubernetes.Types.Inputs.Apps.V1.DeploymentSpecArgs",
        "new Kubernetes.Types.Inputs.Meta.V1.ObjectMetaArgs",
        "new Kubernetes.Types.Inputs.Core.V1.ContainerArgs",
        'new Kubernetes.Core.V1.Service("nginx-service"',
    ],
    "yaml": ["type: kubernetes:apps/v1:Deployment", "type: kubernetes:core/v1:Service"],
}
SECRET_READS = {
    "typescript": 'config.requireSecret("dbPassword")',
    "python": 'config.require_secret("dbPassword")',
    "go": 'cfg.RequireSecret("dbPassword")',
    "csharp": 'config.RequireSecret("dbPassword")',
    "yaml": "secret: true",
}


def _program(language: str, resource: str = "website", cloud: str = "aws") -> GeneratedProgram:
    return generate(ProgramRequest(resource, cloud, language))


def _rejects(program: GeneratedProgram, code: str, message: str = "") -> None:
    with pytest.raises(ValueError, match=message):
        check_syntax(replace(program, code=code))


# --- parse_request -----------------------------------------------------------------


@pytest.mark.parametrize(("query", "resource", "cloud", "language"), PHRASINGS)
def test_parse_request_reads_resource_cloud_and_language(
    query: str, resource: str, cloud: str, language: str
) -> None:
    assert parse_request(query) == ProgramRequest(resource, cloud, language)


@pytest.mark.parametrize("query", NON_REQUESTS)
def test_parse_request_ignores_queries_that_do_not_ask_for_code(query: str) -> None:
    assert parse_request(query) is None


def test_parse_request_needs_a_resource_even_when_code_is_asked_for() -> None:
    assert parse_request("Write me a Python program") is None


def test_explicit_cloud_wins_over_a_synonym_that_implies_another() -> None:
    assert parse_request("Write a Postgres database for Azure") == ProgramRequest(
        "database", "azure", "typescript"
    )


@given(st.text(max_size=200))
def test_parse_request_returns_none_or_normalised_keys(query: str) -> None:
    request = parse_request(query)
    if request is not None:
        assert (request.resource, request.cloud) in PROGRAMS
        assert request.language in LANGUAGES


# --- generate: every combination ---------------------------------------------------


@pytest.mark.parametrize(
    "request_", ALL_REQUESTS, ids=lambda r: f"{r.resource}-{r.cloud}-{r.language}"
)
def test_every_program_passes_its_syntax_check(request_: ProgramRequest) -> None:
    program = generate(request_)

    check_syntax(program)
    assert (program.language, program.resource, program.cloud) == (
        request_.language,
        request_.resource,
        request_.cloud,
    )
    if program.language == "yaml":
        document = yaml.safe_load(program.code)
        assert document["runtime"] == "yaml"
        prefix = PACKAGES[program.cloud] + ":"
        assert all(r["type"].startswith(prefix) for r in document["resources"].values())
        assert document["outputs"]
    else:
        assert PROVIDER_MARKERS[(program.language, program.cloud)] in program.code
    if program.language == "python":
        ast.parse(program.code)


@pytest.mark.parametrize(
    "request_", ALL_REQUESTS, ids=lambda r: f"{r.resource}-{r.cloud}-{r.language}"
)
def test_instructions_are_numbered_steps_for_the_language_and_cloud(
    request_: ProgramRequest,
) -> None:
    instructions = generate(request_).instructions
    lines = instructions.splitlines()

    assert f"pulumi new {request_.cloud}-{request_.language}" in instructions
    assert f"pulumi config set {LOCATION_KEYS[request_.cloud]}" in instructions
    assert "`pulumi up`" in instructions
    numbers = [int(m.group(1)) for line in lines if (m := re.match(r"(\d+)\. ", line))]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 5
    assert lines[-1].startswith("Here is the ")
    assert lines[-1].endswith(":")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("cloud", CLOUDS)
def test_database_passwords_come_from_secret_config(cloud: str, language: str) -> None:
    program = _program(language, "database", cloud)

    assert SECRET_READS[language] in program.code
    assert "pulumi config set --secret dbPassword" in program.instructions
    assert not re.search(r"password\w*\s*[=:]\s*\"", program.code, re.IGNORECASE)


def test_go_discards_resources_nothing_reads() -> None:
    code = _program("go", "bucket", "aws").code

    assert "bucket, err := s3.NewBucketV2(" in code
    assert "_, err = s3.NewBucketVersioningV2(" in code


@pytest.mark.parametrize("language", LANGUAGES)
def test_kubernetes_deployment_uses_the_sdks_names(language: str) -> None:
    code = _program(language, "app", "kubernetes").code

    for expected in KUBERNETES_DEPLOYMENT[language]:
        assert expected in code


def test_kubernetes_helm_release_and_secret_read_their_modules() -> None:
    helm = {language: _program(language, "helm", "kubernetes").code for language in LANGUAGES}
    assert "new k8s.helm.v3.Release(" in helm["typescript"]
    assert "k8s.helm.v3.Release(" in helm["python"]
    assert "helmv3.NewRelease(" in helm["go"]
    assert "&helmv3.RepositoryOptsArgs{" in helm["go"]
    assert "new Kubernetes.Types.Inputs.Helm.V3.RepositoryOptsArgs" in helm["csharp"]
    assert "type: kubernetes:helm.sh/v3:Release" in helm["yaml"]
    secret = _program("go", "config", "kubernetes").code
    assert 'cfg.RequireSecret("apiKey")' in secret
    assert '"API_KEY": apiKey,' in secret


def test_program_follow_up_does_not_move_kubernetes_to_a_cloud() -> None:
    assert follow_up_request("and on Azure?", "app", "kubernetes", "go") is None
    assert follow_up_request("in python", "app", "kubernetes", "go") == ProgramRequest(
        "app", "kubernetes", "python"
    )


def test_program_id_is_short_deterministic_and_salted() -> None:
    request = ProgramRequest("bucket", "aws", "typescript")
    first = generate(request).program_id

    assert re.fullmatch(r"[A-Za-z0-9_-]{7}", first)
    assert generate(request).program_id == first
    assert generate(request, salt="conversation-2").program_id != first
    ids = {generate(r, salt="x").program_id for r in ALL_REQUESTS}
    assert len(ids) == len(ALL_REQUESTS)


@pytest.mark.parametrize(
    "request_",
    [
        ProgramRequest("kubernetes", "aws", "typescript"),
        ProgramRequest("app", "aws", "typescript"),
        ProgramRequest("bucket", "kubernetes", "typescript"),
        ProgramRequest("bucket", "oracle", "typescript"),
        ProgramRequest("bucket", "aws", "java"),
    ],
)
def test_generate_rejects_unknown_keys(request_: ProgramRequest) -> None:
    with pytest.raises(ValueError):
        generate(request_)


# --- check_syntax: what each language's check rejects --------------------------------


def test_typescript_rejects_an_unbalanced_brace() -> None:
    program = _program("typescript")
    broken = program.code.replace("});", ");", 1)
    _rejects(program, broken, r"TypeScript: line \d+")


def test_typescript_rejects_an_unterminated_string_and_template() -> None:
    program = _program("typescript")
    _rejects(program, program.code.replace('"index.html"', '"index.html', 1), "unterminated")
    _rejects(program, "const url = `http://${host;\n", "unterminated|never closed")
    _rejects(program, "const url = `http://${host};\n", "unterminated")


def test_typescript_rejects_a_missing_semicolon_between_statements() -> None:
    program = _program("typescript")
    _rejects(program, "const a = 1\nconst b = 2;\n", "missing ';'")
    _rejects(program, "const a = f(1,, 2);\n", "','")


def test_typescript_ignores_brackets_inside_strings_comments_and_templates() -> None:
    program = _program("typescript")
    code = (
        "// a comment with { and (\n"
        "/* and a block ] comment */\n"
        "const a = \"}\" + '{' + `x ${JSON.stringify({ b: [1] })} }`;\n"
    )
    check_syntax(replace(program, code=code))


def test_python_rejects_bad_indentation() -> None:
    program = _program("python")
    broken = program.code.replace("import pulumi_aws", "  import pulumi_aws", 1)
    _rejects(program, broken, "Python: line 4: unexpected indent")


def test_python_rejects_what_only_the_compiler_catches() -> None:
    _rejects(_program("python"), "return 1\n", "outside function")


def test_go_rejects_an_unbalanced_brace() -> None:
    program = _program("go")
    _rejects(program, program.code.rstrip().removesuffix("}") + "\n", "never closed")


def test_go_rejects_a_missing_package_clause_and_main() -> None:
    program = _program("go")
    _rejects(program, program.code.replace("package main", "package site"), "package main")
    _rejects(program, program.code.replace("func main()", "func run()"), r"func main\(\)")


def test_go_rejects_an_unused_import() -> None:
    program = _program("go")
    broken = program.code.replace("import (\n", 'import (\n\t"fmt"\n', 1)
    _rejects(program, broken, "package fmt is imported but not used")


def test_go_honours_raw_strings_runes_and_comments() -> None:
    program = _program("go")
    code = (
        "package main\n\n"
        'import "fmt"\n\n'
        "// {\n"
        "func main() {\n"
        "\tfmt.Println(`}{`, '}', \"{\", /* ( */ 1)\n"
        "}\n"
    )
    check_syntax(replace(program, code=code))


def test_csharp_rejects_an_unbalanced_brace() -> None:
    program = _program("csharp")
    _rejects(program, program.code.replace("});\n", ");\n", 1), "C#: line")


def test_csharp_needs_pulumi_and_run_async() -> None:
    program = _program("csharp")
    _rejects(program, program.code.replace("using Pulumi;\n", ""), "using Pulumi;")
    broken = program.code.replace("Deployment.RunAsync", "Deployment.Run")
    _rejects(program, broken, "RunAsync")


def test_csharp_understands_interpolated_and_verbatim_strings() -> None:
    program = _program("csharp")
    code = (
        "using Pulumi;\n"
        "return await Deployment.RunAsync(() =>\n"
        "{\n"
        '    var a = $"{{literal}} {Output.Create("}")} done";\n'
        '    var b = @"a ""quoted"" { brace";\n'
        "    var c = '{';\n"
        "});\n"
    )
    check_syntax(replace(program, code=code))
    _rejects(program, code.replace('{Output.Create("}")}', '{Output.Create("}")'), "C#")


def test_yaml_rejects_invalid_yaml() -> None:
    program = _program("yaml")
    _rejects(program, program.code.replace("runtime: yaml", "runtime: [yaml"), "invalid YAML")
    _rejects(program, "name: x\n\truntime: yaml\n", "invalid YAML")


def test_yaml_rejects_programs_of_the_wrong_shape() -> None:
    program = _program("yaml")
    _rejects(program, program.code.replace("runtime: yaml\n", ""), "runtime: yaml")
    _rejects(program, "name: x\nruntime: yaml\nresources:\n  a:\n    properties: {}\n", "type")
    _rejects(program, "name: x\nruntime: yaml\nresources: {}\n", "at least one resource")


def test_yaml_rejects_references_to_undeclared_names() -> None:
    program = _program("yaml")
    broken = program.code.replace("${website-bucket.id}", "${missing.id}", 1)
    _rejects(program, broken, "missing")


def test_check_syntax_rejects_an_unknown_language() -> None:
    _rejects(replace(_program("yaml"), language="cobol"), "", "unsupported")


# --- real toolchains, when the machine has them --------------------------------------


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_typescript_programs_parse_as_javascript_modules(tmp_path: Path) -> None:
    # The renderer writes no type annotations, so node can parse the programs as-is.
    for resource, cloud in PROGRAMS:
        path = tmp_path / f"{cloud}-{resource}.mjs"
        path.write_text(_program("typescript", resource, cloud).code)
        result = subprocess.run(
            ["node", "--check", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("gofmt") is None, reason="gofmt is not installed")
def test_go_programs_parse_and_are_gofmt_clean(tmp_path: Path) -> None:
    for resource, cloud in PROGRAMS:
        (tmp_path / f"{cloud}-{resource}.go").write_text(_program("go", resource, cloud).code)
    result = subprocess.run(
        ["gofmt", "-e", "-l", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


# --- components that combine resources, and Helm charts by name ----------------------

# What each component program must contain in every language, case-insensitively.
COMPONENT_PARTS = {
    ("website", "aws"): ("Distribution", "BucketV2", "cdnUrl"),
    ("website", "gcp"): ("BackendBucket", "GlobalForwardingRule", "cdnUrl"),
    ("network", "aws"): ("Vpc", "Subnet", "RouteTable"),
    ("network", "azure"): ("VirtualNetwork", "subnets"),
    ("network", "gcp"): ("Network", "Subnetwork"),
    ("app", "kubernetes"): ("Deployment", "Service"),
    ("config", "kubernetes"): ("Namespace", "ConfigMap", "Secret"),
}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(("resource", "cloud"), sorted(COMPONENT_PARTS))
def test_component_programs_combine_their_resources(
    resource: str, cloud: str, language: str
) -> None:
    program = _program(language, resource, cloud)

    check_syntax(program)
    for part in COMPONENT_PARTS[(resource, cloud)]:
        assert part.lower() in program.code.lower(), part


@pytest.mark.parametrize(
    ("query", "chart"),
    [
        ("helm release for redis in typescript", "redis"),
        ("Install postgres on Kubernetes with Helm", "postgresql"),
        ("Install nginx with a Helm chart on Kubernetes", ""),
        ("Install my-own-thing with Helm on k8s", ""),
    ],
)
def test_a_helm_request_reads_the_chart_it_names(query: str, chart: str) -> None:
    request = parse_request(query)

    assert request is not None
    assert (request.resource, request.cloud, request.chart) == ("helm", "kubernetes", chart)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_named_helm_chart_replaces_the_templates_chart(language: str) -> None:
    program = generate(ProgramRequest("helm", "kubernetes", language, "redis"))

    check_syntax(program)
    assert "redis" in program.code
    assert "nginx" not in program.code
    # The template pins nginx's version; another chart's version is the user's to pin.
    assert "18.2.4" not in program.code
    assert "redis" in program.instructions
    default = generate(ProgramRequest("helm", "kubernetes", language))
    assert default.program_id != program.program_id


def test_a_helm_follow_up_keeps_the_chart() -> None:
    assert follow_up_request("now in Go", "helm", "kubernetes", "python", "redis") == (
        ProgramRequest("helm", "kubernetes", "go", "redis")
    )
