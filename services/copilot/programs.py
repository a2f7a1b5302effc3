"""Offline Pulumi program generation for the copilot's "program" messages."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import keyword
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any, TypeAlias

__all__ = [
    "CLOUDS",
    "LANGUAGES",
    "RESOURCES",
    "GeneratedProgram",
    "ProgramRequest",
    "check_syntax",
    "generate",
    "parse_request",
]

LANGUAGES = ("typescript", "python", "go", "csharp", "yaml")
CLOUDS = ("aws", "azure", "gcp")
RESOURCES = ("bucket", "vm", "network", "database", "container", "dns", "website")


@dataclass(frozen=True)
class ProgramRequest:
    """What the user asked for, as normalised keys from RESOURCES, CLOUDS and LANGUAGES."""

    resource: str
    cloud: str
    language: str


@dataclass(frozen=True)
class GeneratedProgram:
    """A complete program plus the steps to run it; the payload of a "program" message."""

    code: str
    instructions: str
    language: str
    program_id: str
    resource: str
    cloud: str


# ---------------------------------------------------------------------------------------
# The structured description every renderer reads.
#
# Property names are written the way the Pulumi schema spells them (camelCase); each
# renderer derives its own spelling (snake_case for Python, PascalCase for Go and C#).


@dataclass(frozen=True)
class _Ref:
    """An output of an earlier resource or function call, reached by a property path."""

    target: str
    path: tuple[str | int, ...]


@dataclass(frozen=True)
class _ConfigRef:
    """The value of a declared config key."""

    key: str


@dataclass(frozen=True)
class _Interpolate:
    """A string assembled from literals and outputs."""

    parts: tuple[str | _Ref | _ConfigRef, ...]


@dataclass(frozen=True)
class _StringAsset:
    """File content given inline."""

    text: str


@dataclass(frozen=True)
class _Obj:
    """A typed nested input; Go and C# need the schema type name, the others do not."""

    type_name: str
    fields: _Fields
    # Go appends "Type" when a nested type shares its name with a resource (SubnetType).
    go_type: str = ""


@dataclass(frozen=True)
class _Items:
    """A list input."""

    values: tuple[_Value, ...]


@dataclass(frozen=True)
class _StringMap:
    """A map of free-form string keys, such as tags."""

    entries: _Fields


_Value: TypeAlias = (
    str | int | float | bool | _Ref | _ConfigRef | _Interpolate | _StringAsset | _Obj | _Items
) | _StringMap
_Fields: TypeAlias = tuple[tuple[str, _Value], ...]


@dataclass(frozen=True)
class _Config:
    """A stack config value the program reads; secrets never get a default."""

    key: str
    secret: bool = False
    default: str | None = None
    example: str = ""
    purpose: str = ""


@dataclass(frozen=True)
class _Resource:
    """One resource declaration."""

    var: str
    name: str
    token: str
    args: _Fields
    depends_on: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class _Invoke:
    """One provider function call in its output form."""

    var: str
    token: str
    # Go names functions that read an existing resource "Lookup..." and others "Get...".
    go_function: str
    args: _Fields
    note: str


_Step: TypeAlias = _Resource | _Invoke


@dataclass(frozen=True)
class _Spec:
    """A whole program: config, ordered steps and stack outputs."""

    resource: str
    cloud: str
    summary: str
    configs: tuple[_Config, ...]
    steps: tuple[_Step, ...]
    exports: _Fields


@dataclass(frozen=True)
class _Token:
    """The parts of a Pulumi type token such as aws:s3/bucketV2:BucketV2."""

    package: str
    module: str
    member: str


@dataclass(frozen=True)
class _Provider:
    """How one provider package is spelled in each language and set up on the CLI."""

    cloud: str
    display: str
    package: str
    npm: str
    python_module: str
    # Empty for azure-native, whose SDKs are imported one module at a time.
    alias: str
    go_path: str
    csharp_alias: str
    csharp_namespace: str
    location_key: str
    location_example: str
    location_purpose: str
    login: str


_PROVIDERS = {
    "aws": _Provider(
        cloud="aws",
        display="AWS",
        package="aws",
        npm="@pulumi/aws",
        python_module="pulumi_aws",
        alias="aws",
        go_path="github.com/pulumi/pulumi-aws/sdk/v6/go/aws/{module}",
        csharp_alias="Aws",
        csharp_namespace="Pulumi.Aws",
        location_key="aws:region",
        location_example="us-east-1",
        location_purpose="the AWS region to deploy into",
        login="make sure AWS credentials are available (for example `aws configure` or "
        "`export AWS_PROFILE=<profile>`)",
    ),
    "azure": _Provider(
        cloud="azure",
        display="Azure",
        package="azure-native",
        npm="@pulumi/azure-native",
        python_module="pulumi_azure_native",
        alias="",
        go_path="github.com/pulumi/pulumi-azure-native-sdk/{module}/v2",
        csharp_alias="AzureNative",
        csharp_namespace="Pulumi.AzureNative",
        location_key="azure-native:location",
        location_example="eastus",
        location_purpose="the Azure location for new resource groups",
        login="sign in with `az login`",
    ),
    "gcp": _Provider(
        cloud="gcp",
        display="Google Cloud",
        package="gcp",
        npm="@pulumi/gcp",
        python_module="pulumi_gcp",
        alias="gcp",
        go_path="github.com/pulumi/pulumi-gcp/sdk/v8/go/gcp/{module}",
        csharp_alias="Gcp",
        csharp_namespace="Pulumi.Gcp",
        location_key="gcp:project",
        location_example="<your-project-id>",
        location_purpose="the Google Cloud project to deploy into",
        login="authenticate with `gcloud auth application-default login`",
    ),
}

# C# namespaces do not follow one casing rule, so they are listed.
_CSHARP_MODULES = {
    "app": "App",
    "cloudrunv2": "CloudRunV2",
    "compute": "Compute",
    "dbforpostgresql": "DBforPostgreSQL",
    "dns": "Dns",
    "ec2": "Ec2",
    "ecs": "Ecs",
    "network": "Network",
    "rds": "Rds",
    "resources": "Resources",
    "route53": "Route53",
    "s3": "S3",
    "sql": "Sql",
    "storage": "Storage",
}

_LANGUAGE_NAMES = {
    "typescript": "TypeScript",
    "python": "Python",
    "go": "Go",
    "csharp": "C#",
    "yaml": "YAML",
}
_PROGRAM_FILES = {
    "typescript": "index.ts",
    "python": "__main__.py",
    "go": "main.go",
    "csharp": "Program.cs",
    "yaml": "Pulumi.yaml",
}


def _ref(target: str, *path: str | int) -> _Ref:
    """Shorthand for an output reference."""
    return _Ref(target, path)


def _obj(type_name: str, /, **fields: _Value) -> _Obj:
    """Shorthand for a typed nested input."""
    return _Obj(type_name, tuple(fields.items()))


def _obj_go(type_name: str, go_type: str, /, **fields: _Value) -> _Obj:
    """Shorthand for a nested input whose Go type name differs."""
    return _Obj(type_name, tuple(fields.items()), go_type)


def _items(*values: _Value) -> _Items:
    """Shorthand for a list input."""
    return _Items(values)


def _tags(**entries: str) -> _StringMap:
    """Shorthand for a string map."""
    return _StringMap(tuple(entries.items()))


def _join(*parts: str | _Ref | _ConfigRef) -> _Interpolate:
    """Shorthand for string interpolation."""
    return _Interpolate(parts)


def _res(
    var: str,
    name: str,
    token: str,
    /,
    *,
    note: str = "",
    depends_on: tuple[str, ...] = (),
    **args: _Value,
) -> _Resource:
    """Shorthand for a resource declaration."""
    return _Resource(var, name, token, tuple(args.items()), depends_on, note)


def _call(var: str, token: str, go_function: str, /, *, note: str = "", **args: _Value) -> _Invoke:
    """Shorthand for a function call."""
    return _Invoke(var, token, go_function, tuple(args.items()), note)


# ---------------------------------------------------------------------------------------
# The catalogue: one description per (resource, cloud); languages come from the renderers.

_INDEX_HTML = "<html><body><h1>Hello from Pulumi!</h1></body></html>"
_DB_PASSWORD = _Config(
    "dbPassword",
    secret=True,
    purpose="the database administrator password",
)
_DOMAIN = _Config("domain", example="example.com", purpose="the DNS zone to create")
_AWS_OPEN_EGRESS = _obj(
    "SecurityGroupEgress",
    protocol="-1",
    fromPort=0,
    toPort=0,
    cidrBlocks=_items("0.0.0.0/0"),
)


def _aws_http_ingress() -> _Obj:
    """Inbound HTTP from anywhere, shared by the AWS web-facing programs."""
    return _obj(
        "SecurityGroupIngress",
        protocol="tcp",
        fromPort=80,
        toPort=80,
        cidrBlocks=_items("0.0.0.0/0"),
    )


def _aws_bucket() -> _Spec:
    return _Spec(
        "bucket",
        "aws",
        "An S3 bucket with versioning turned on and all public access blocked.",
        (),
        (
            _res("bucket", "my-bucket", "aws:s3/bucketV2:BucketV2", tags=_tags(Environment="dev")),
            _res(
                "versioning",
                "my-bucket-versioning",
                "aws:s3/bucketVersioningV2:BucketVersioningV2",
                note="Keep earlier object versions so overwrites and deletes can be undone.",
                bucket=_ref("bucket", "id"),
                versioningConfiguration=_obj(
                    "BucketVersioningV2VersioningConfiguration", status="Enabled"
                ),
            ),
            _res(
                "publicAccessBlock",
                "my-bucket-public-access-block",
                "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                note="A private bucket should stay private even if someone adds a public ACL.",
                bucket=_ref("bucket", "id"),
                blockPublicAcls=True,
                blockPublicPolicy=True,
                ignorePublicAcls=True,
                restrictPublicBuckets=True,
            ),
        ),
        (("bucketName", _ref("bucket", "id")), ("bucketArn", _ref("bucket", "arn"))),
    )


def _aws_vm() -> _Spec:
    return _Spec(
        "vm",
        "aws",
        "An EC2 instance running nginx on the latest Amazon Linux 2023 AMI, reachable over HTTP.",
        (
            _Config(
                "instanceType",
                default="t3.micro",
                example="t3.small",
                purpose="the EC2 instance type",
            ),
        ),
        (
            _call(
                "ami",
                "aws:ec2/getAmi:getAmi",
                "LookupAmi",
                note="Look the AMI up so the program keeps working as Amazon publishes new images.",
                mostRecent=True,
                owners=_items("amazon"),
                filters=_items(
                    _obj("GetAmiFilter", name="name", values=_items("al2023-ami-2023.*-x86_64"))
                ),
            ),
            _res(
                "webSecurityGroup",
                "web-sg",
                "aws:ec2/securityGroup:SecurityGroup",
                note="Open port 80 only; egress stays open so the instance can install packages.",
                description="Allow HTTP in",
                ingress=_items(_aws_http_ingress()),
                egress=_items(_AWS_OPEN_EGRESS),
            ),
            _res(
                "server",
                "web-server",
                "aws:ec2/instance:Instance",
                ami=_ref("ami", "id"),
                instanceType=_ConfigRef("instanceType"),
                vpcSecurityGroupIds=_items(_ref("webSecurityGroup", "id")),
                userData="#!/bin/bash\ndnf install -y nginx\nsystemctl enable --now nginx\n",
                tags=_tags(Name="web-server"),
            ),
        ),
        (
            ("publicIp", _ref("server", "publicIp")),
            ("url", _join("http://", _ref("server", "publicDns"))),
        ),
    )


def _aws_network() -> _Spec:
    return _Spec(
        "network",
        "aws",
        "A VPC with one public subnet, an internet gateway and a route table.",
        (),
        (
            _res(
                "vpc",
                "main-vpc",
                "aws:ec2/vpc:Vpc",
                cidrBlock="10.0.0.0/16",
                enableDnsHostnames=True,
                enableDnsSupport=True,
                tags=_tags(Name="main-vpc"),
            ),
            _res(
                "internetGateway",
                "main-igw",
                "aws:ec2/internetGateway:InternetGateway",
                vpcId=_ref("vpc", "id"),
            ),
            _res(
                "publicSubnet",
                "public-subnet",
                "aws:ec2/subnet:Subnet",
                vpcId=_ref("vpc", "id"),
                cidrBlock="10.0.1.0/24",
                mapPublicIpOnLaunch=True,
                tags=_tags(Name="public-subnet"),
            ),
            _res(
                "publicRouteTable",
                "public-rt",
                "aws:ec2/routeTable:RouteTable",
                note="Send all non-local traffic through the internet gateway.",
                vpcId=_ref("vpc", "id"),
                routes=_items(
                    _obj(
                        "RouteTableRoute",
                        cidrBlock="0.0.0.0/0",
                        gatewayId=_ref("internetGateway", "id"),
                    )
                ),
            ),
            _res(
                "publicRouteTableAssociation",
                "public-rta",
                "aws:ec2/routeTableAssociation:RouteTableAssociation",
                subnetId=_ref("publicSubnet", "id"),
                routeTableId=_ref("publicRouteTable", "id"),
            ),
        ),
        (("vpcId", _ref("vpc", "id")), ("publicSubnetId", _ref("publicSubnet", "id"))),
    )


def _aws_database() -> _Spec:
    return _Spec(
        "database",
        "aws",
        "A PostgreSQL RDS instance whose administrator password comes from a secret.",
        (_DB_PASSWORD,),
        (
            _res(
                "database",
                "app-db",
                "aws:rds/instance:Instance",
                note="The password is read from encrypted stack config, never from source.",
                engine="postgres",
                engineVersion="16",
                instanceClass="db.t3.micro",
                allocatedStorage=20,
                dbName="app",
                username="appadmin",
                password=_ConfigRef("dbPassword"),
                publiclyAccessible=False,
                skipFinalSnapshot=True,
            ),
        ),
        (("endpoint", _ref("database", "endpoint")), ("address", _ref("database", "address"))),
    )


def _aws_container() -> _Spec:
    container_definitions = json.dumps(
        [
            {
                "name": "web",
                "image": "nginx:latest",
                "essential": True,
                "portMappings": [{"containerPort": 80, "protocol": "tcp"}],
            }
        ],
        separators=(",", ":"),
    )
    return _Spec(
        "container",
        "aws",
        "An ECS cluster running nginx as a Fargate service in the default VPC.",
        (),
        (
            _call(
                "defaultVpc",
                "aws:ec2/getVpc:getVpc",
                "LookupVpc",
                note="Use the account's default VPC so the example needs no network of its own.",
                default=True,
            ),
            _call(
                "defaultSubnets",
                "aws:ec2/getSubnets:getSubnets",
                "GetSubnets",
                filters=_items(
                    _obj(
                        "GetSubnetsFilter",
                        name="vpc-id",
                        values=_items(_ref("defaultVpc", "id")),
                    )
                ),
            ),
            _res("cluster", "app-cluster", "aws:ecs/cluster:Cluster"),
            _res(
                "serviceSecurityGroup",
                "app-sg",
                "aws:ec2/securityGroup:SecurityGroup",
                note="Egress must stay open so the task can pull its image.",
                vpcId=_ref("defaultVpc", "id"),
                ingress=_items(_aws_http_ingress()),
                egress=_items(_AWS_OPEN_EGRESS),
            ),
            _res(
                "taskDefinition",
                "app-task",
                "aws:ecs/taskDefinition:TaskDefinition",
                family="hello-web",
                cpu="256",
                memory="512",
                networkMode="awsvpc",
                requiresCompatibilities=_items("FARGATE"),
                containerDefinitions=container_definitions,
            ),
            _res(
                "service",
                "app-service",
                "aws:ecs/service:Service",
                note="A public IP lets the task reach Docker Hub without a NAT gateway.",
                cluster=_ref("cluster", "arn"),
                taskDefinition=_ref("taskDefinition", "arn"),
                desiredCount=1,
                launchType="FARGATE",
                networkConfiguration=_obj(
                    "ServiceNetworkConfiguration",
                    assignPublicIp=True,
                    subnets=_ref("defaultSubnets", "ids"),
                    securityGroups=_items(_ref("serviceSecurityGroup", "id")),
                ),
            ),
        ),
        (("clusterName", _ref("cluster", "name")), ("serviceName", _ref("service", "name"))),
    )


def _aws_dns() -> _Spec:
    return _Spec(
        "dns",
        "aws",
        "A Route 53 hosted zone with an A record for www.",
        (_DOMAIN,),
        (
            _res("zone", "zone", "aws:route53/zone:Zone", name=_ConfigRef("domain")),
            _res(
                "wwwRecord",
                "www",
                "aws:route53/record:Record",
                zoneId=_ref("zone", "zoneId"),
                name=_join("www.", _ConfigRef("domain")),
                type="A",
                ttl=300,
                records=_items("203.0.113.10"),
            ),
        ),
        (
            ("nameServers", _ref("zone", "nameServers")),
            ("recordName", _ref("wwwRecord", "fqdn")),
        ),
    )


def _aws_website() -> _Spec:
    policy_head = (
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
        '"Action":"s3:GetObject","Resource":"'
    )
    return _Spec(
        "website",
        "aws",
        "A static website served from an S3 bucket with website hosting turned on.",
        (),
        (
            _res("siteBucket", "website-bucket", "aws:s3/bucketV2:BucketV2"),
            _res(
                "websiteConfiguration",
                "website-config",
                "aws:s3/bucketWebsiteConfigurationV2:BucketWebsiteConfigurationV2",
                bucket=_ref("siteBucket", "id"),
                indexDocument=_obj(
                    "BucketWebsiteConfigurationV2IndexDocument", suffix="index.html"
                ),
                errorDocument=_obj("BucketWebsiteConfigurationV2ErrorDocument", key="index.html"),
            ),
            _res(
                "publicAccessBlock",
                "website-public-access",
                "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                note="New buckets block public policies; a website needs one.",
                bucket=_ref("siteBucket", "id"),
                blockPublicAcls=False,
                blockPublicPolicy=False,
                ignorePublicAcls=False,
                restrictPublicBuckets=False,
            ),
            _res(
                "bucketPolicy",
                "website-policy",
                "aws:s3/bucketPolicy:BucketPolicy",
                note="S3 rejects a public policy until the public access block is relaxed.",
                depends_on=("publicAccessBlock",),
                bucket=_ref("siteBucket", "id"),
                policy=_join(policy_head, _ref("siteBucket", "arn"), '/*"}]}'),
            ),
            _res(
                "indexPage",
                "index-html",
                "aws:s3/bucketObject:BucketObject",
                bucket=_ref("siteBucket", "id"),
                key="index.html",
                content=_INDEX_HTML,
                contentType="text/html",
            ),
        ),
        (("url", _join("http://", _ref("websiteConfiguration", "websiteEndpoint"))),),
    )


def _azure_group(name: str) -> _Resource:
    """Every Azure program starts with a resource group."""
    return _res("resourceGroup", name, "azure-native:resources:ResourceGroup")


_RESOURCE_GROUP = _ref("resourceGroup", "name")


def _azure_storage_account(var: str, name: str) -> _Resource:
    """A general-purpose v2 account, the Azure home of blobs."""
    return _res(
        var,
        name,
        "azure-native:storage:StorageAccount",
        note="Storage account names must be lowercase letters and digits; "
        "Pulumi appends a random suffix.",
        resourceGroupName=_RESOURCE_GROUP,
        sku=_obj("Sku", name="Standard_LRS"),
        kind="StorageV2",
        allowBlobPublicAccess=False,
    )


def _azure_bucket() -> _Spec:
    return _Spec(
        "bucket",
        "azure",
        "A storage account with a private blob container.",
        (),
        (
            _azure_group("storage-rg"),
            _azure_storage_account("storageAccount", "sa"),
            _res(
                "blobContainer",
                "data",
                "azure-native:storage:BlobContainer",
                accountName=_ref("storageAccount", "name"),
                resourceGroupName=_RESOURCE_GROUP,
            ),
        ),
        (
            ("storageAccountName", _ref("storageAccount", "name")),
            ("containerName", _ref("blobContainer", "name")),
            ("blobEndpoint", _ref("storageAccount", "primaryEndpoints", "blob")),
        ),
    )


def _azure_vm() -> _Spec:
    return _Spec(
        "vm",
        "azure",
        "An Ubuntu virtual machine with a public IP, reachable over SSH with your key.",
        (
            _Config(
                "sshPublicKey",
                example='"$(cat ~/.ssh/id_rsa.pub)"',
                purpose="the SSH public key allowed to log in",
            ),
        ),
        (
            _azure_group("vm-rg"),
            _res(
                "virtualNetwork",
                "vm-vnet",
                "azure-native:network:VirtualNetwork",
                resourceGroupName=_RESOURCE_GROUP,
                addressSpace=_obj("AddressSpace", addressPrefixes=_items("10.0.0.0/16")),
            ),
            _res(
                "subnet",
                "vm-subnet",
                "azure-native:network:Subnet",
                resourceGroupName=_RESOURCE_GROUP,
                virtualNetworkName=_ref("virtualNetwork", "name"),
                addressPrefix="10.0.1.0/24",
            ),
            _res(
                "publicIp",
                "vm-ip",
                "azure-native:network:PublicIPAddress",
                note="Standard SKU addresses stay closed until a security rule opens them.",
                resourceGroupName=_RESOURCE_GROUP,
                publicIPAllocationMethod="Static",
                sku=_obj("PublicIPAddressSku", name="Standard"),
            ),
            _res(
                "securityGroup",
                "vm-nsg",
                "azure-native:network:NetworkSecurityGroup",
                resourceGroupName=_RESOURCE_GROUP,
                securityRules=_items(
                    _obj_go(
                        "SecurityRule",
                        "SecurityRuleType",
                        name="allow-ssh",
                        priority=1000,
                        direction="Inbound",
                        access="Allow",
                        protocol="Tcp",
                        sourcePortRange="*",
                        destinationPortRange="22",
                        sourceAddressPrefix="*",
                        destinationAddressPrefix="*",
                    )
                ),
            ),
            _res(
                "networkInterface",
                "vm-nic",
                "azure-native:network:NetworkInterface",
                resourceGroupName=_RESOURCE_GROUP,
                networkSecurityGroup=_obj_go(
                    "NetworkSecurityGroup",
                    "NetworkSecurityGroupType",
                    id=_ref("securityGroup", "id"),
                ),
                ipConfigurations=_items(
                    _obj(
                        "NetworkInterfaceIPConfiguration",
                        name="ipconfig1",
                        subnet=_obj_go("Subnet", "SubnetType", id=_ref("subnet", "id")),
                        publicIPAddress=_obj_go(
                            "PublicIPAddress", "PublicIPAddressType", id=_ref("publicIp", "id")
                        ),
                        privateIPAllocationMethod="Dynamic",
                    )
                ),
            ),
            _res(
                "virtualMachine",
                "web-vm",
                "azure-native:compute:VirtualMachine",
                note="Key-only SSH login; password authentication stays off.",
                resourceGroupName=_RESOURCE_GROUP,
                hardwareProfile=_obj("HardwareProfile", vmSize="Standard_B1s"),
                networkProfile=_obj(
                    "NetworkProfile",
                    networkInterfaces=_items(
                        _obj(
                            "NetworkInterfaceReference",
                            id=_ref("networkInterface", "id"),
                            primary=True,
                        )
                    ),
                ),
                osProfile=_obj(
                    "OSProfile",
                    computerName="web-vm",
                    adminUsername="azureuser",
                    linuxConfiguration=_obj(
                        "LinuxConfiguration",
                        disablePasswordAuthentication=True,
                        ssh=_obj(
                            "SshConfiguration",
                            publicKeys=_items(
                                _obj_go(
                                    "SshPublicKey",
                                    "SshPublicKeyType",
                                    keyData=_ConfigRef("sshPublicKey"),
                                    path="/home/azureuser/.ssh/authorized_keys",
                                )
                            ),
                        ),
                    ),
                ),
                storageProfile=_obj(
                    "StorageProfile",
                    imageReference=_obj(
                        "ImageReference",
                        publisher="Canonical",
                        offer="0001-com-ubuntu-server-jammy",
                        sku="22_04-lts-gen2",
                        version="latest",
                    ),
                    osDisk=_obj(
                        "OSDisk",
                        createOption="FromImage",
                        managedDisk=_obj(
                            "ManagedDiskParameters", storageAccountType="Standard_LRS"
                        ),
                    ),
                ),
            ),
        ),
        (
            ("vmName", _ref("virtualMachine", "name")),
            ("publicIpAddress", _ref("publicIp", "ipAddress")),
        ),
    )


def _azure_network() -> _Spec:
    return _Spec(
        "network",
        "azure",
        "A virtual network with separate subnets for web and data tiers.",
        (),
        (
            _azure_group("network-rg"),
            _res(
                "virtualNetwork",
                "main-vnet",
                "azure-native:network:VirtualNetwork",
                resourceGroupName=_RESOURCE_GROUP,
                addressSpace=_obj("AddressSpace", addressPrefixes=_items("10.0.0.0/16")),
                subnets=_items(
                    _obj_go("Subnet", "SubnetType", name="web", addressPrefix="10.0.1.0/24"),
                    _obj_go("Subnet", "SubnetType", name="data", addressPrefix="10.0.2.0/24"),
                ),
            ),
        ),
        (
            ("virtualNetworkName", _ref("virtualNetwork", "name")),
            ("virtualNetworkId", _ref("virtualNetwork", "id")),
        ),
    )


def _azure_database() -> _Spec:
    return _Spec(
        "database",
        "azure",
        "An Azure Database for PostgreSQL flexible server with an application database.",
        (_DB_PASSWORD,),
        (
            _azure_group("database-rg"),
            _res(
                "server",
                "postgres-server",
                "azure-native:dbforpostgresql:Server",
                note="The administrator password comes from encrypted stack config.",
                resourceGroupName=_RESOURCE_GROUP,
                version="15",
                administratorLogin="pgadmin",
                administratorLoginPassword=_ConfigRef("dbPassword"),
                sku=_obj("Sku", name="Standard_B1ms", tier="Burstable"),
                storage=_obj("Storage", storageSizeGB=32),
            ),
            _res(
                "database",
                "app-db",
                "azure-native:dbforpostgresql:Database",
                resourceGroupName=_RESOURCE_GROUP,
                serverName=_ref("server", "name"),
                databaseName="app",
                charset="UTF8",
                collation="en_US.utf8",
            ),
            _res(
                "allowAzureServices",
                "allow-azure-services",
                "azure-native:dbforpostgresql:FirewallRule",
                note="The 0.0.0.0 range is Azure's marker for traffic from Azure services only.",
                resourceGroupName=_RESOURCE_GROUP,
                serverName=_ref("server", "name"),
                startIpAddress="0.0.0.0",
                endIpAddress="0.0.0.0",
            ),
        ),
        (
            ("serverHost", _ref("server", "fullyQualifiedDomainName")),
            ("databaseName", _ref("database", "name")),
        ),
    )


def _azure_container() -> _Spec:
    return _Spec(
        "container",
        "azure",
        "An Azure Container App serving a sample image over public HTTPS.",
        (),
        (
            _azure_group("container-rg"),
            _res(
                "environment",
                "app-env",
                "azure-native:app:ManagedEnvironment",
                resourceGroupName=_RESOURCE_GROUP,
            ),
            _res(
                "containerApp",
                "hello-app",
                "azure-native:app:ContainerApp",
                note="Scale to zero when idle so the example costs nothing at rest.",
                resourceGroupName=_RESOURCE_GROUP,
                managedEnvironmentId=_ref("environment", "id"),
                configuration=_obj(
                    "Configuration",
                    ingress=_obj("Ingress", external=True, targetPort=80),
                ),
                template=_obj(
                    "Template",
                    containers=_items(
                        _obj(
                            "Container",
                            name="hello",
                            image="mcr.microsoft.com/k8se/quickstart:latest",
                            resources=_obj("ContainerResources", cpu=0.25, memory="0.5Gi"),
                        )
                    ),
                    scale=_obj("Scale", minReplicas=0, maxReplicas=1),
                ),
            ),
        ),
        (("url", _join("https://", _ref("containerApp", "latestRevisionFqdn"))),),
    )


def _azure_dns() -> _Spec:
    return _Spec(
        "dns",
        "azure",
        "An Azure DNS zone with an A record for www.",
        (_DOMAIN,),
        (
            _azure_group("dns-rg"),
            _res(
                "zone",
                "zone",
                "azure-native:network:Zone",
                note="DNS zones are global resources, not tied to the group's region.",
                resourceGroupName=_RESOURCE_GROUP,
                zoneName=_ConfigRef("domain"),
                location="global",
            ),
            _res(
                "wwwRecord",
                "www",
                "azure-native:network:RecordSet",
                resourceGroupName=_RESOURCE_GROUP,
                zoneName=_ref("zone", "name"),
                relativeRecordSetName="www",
                recordType="A",
                # azure-native types int64 properties as numbers (float64 in Go).
                ttl=3600.0,
                aRecords=_items(_obj("ARecord", ipv4Address="203.0.113.10")),
            ),
        ),
        (
            ("nameServers", _ref("zone", "nameServers")),
            ("recordName", _ref("wwwRecord", "fqdn")),
        ),
    )


def _azure_website() -> _Spec:
    return _Spec(
        "website",
        "azure",
        "A static website hosted from an Azure storage account.",
        (),
        (
            _azure_group("website-rg"),
            _azure_storage_account("storageAccount", "websitesa"),
            _res(
                "staticWebsite",
                "static-website",
                "azure-native:storage:StorageAccountStaticWebsite",
                note="Turning static hosting on creates the special $web container.",
                accountName=_ref("storageAccount", "name"),
                resourceGroupName=_RESOURCE_GROUP,
                indexDocument="index.html",
                error404Document="index.html",
            ),
            _res(
                "indexPage",
                "index-html",
                "azure-native:storage:Blob",
                resourceGroupName=_RESOURCE_GROUP,
                accountName=_ref("storageAccount", "name"),
                containerName=_ref("staticWebsite", "containerName"),
                blobName="index.html",
                contentType="text/html",
                source=_StringAsset(_INDEX_HTML),
            ),
        ),
        (("url", _ref("storageAccount", "primaryEndpoints", "web")),),
    )


def _gcp_bucket() -> _Spec:
    return _Spec(
        "bucket",
        "gcp",
        "A Cloud Storage bucket with uniform access control and object versioning.",
        (),
        (
            _res(
                "bucket",
                "my-bucket",
                "gcp:storage/bucket:Bucket",
                note="Uniform access means IAM alone decides who can read objects.",
                location="US",
                uniformBucketLevelAccess=True,
                forceDestroy=True,
                versioning=_obj("BucketVersioning", enabled=True),
            ),
        ),
        (("bucketName", _ref("bucket", "name")), ("bucketUrl", _ref("bucket", "url"))),
    )


def _gcp_vm() -> _Spec:
    return _Spec(
        "vm",
        "gcp",
        "A Compute Engine VM running nginx, with a firewall rule that lets HTTP in.",
        (),
        (
            _res(
                "allowHttp",
                "allow-http",
                "gcp:compute/firewall:Firewall",
                note="Only instances tagged http-server receive port 80 traffic.",
                network="default",
                allows=_items(_obj("FirewallAllow", protocol="tcp", ports=_items("80"))),
                sourceRanges=_items("0.0.0.0/0"),
                targetTags=_items("http-server"),
            ),
            _res(
                "server",
                "web-server",
                "gcp:compute/instance:Instance",
                note="An empty access config asks Google for an ephemeral public IP.",
                machineType="e2-micro",
                zone="us-central1-a",
                tags=_items("http-server"),
                bootDisk=_obj(
                    "InstanceBootDisk",
                    initializeParams=_obj(
                        "InstanceBootDiskInitializeParams", image="debian-cloud/debian-12"
                    ),
                ),
                networkInterfaces=_items(
                    _obj(
                        "InstanceNetworkInterface",
                        network="default",
                        accessConfigs=_items(_obj("InstanceNetworkInterfaceAccessConfig")),
                    )
                ),
                metadataStartupScript="#!/bin/bash\napt-get update\napt-get install -y nginx\n",
            ),
        ),
        (
            ("instanceName", _ref("server", "name")),
            (
                "externalIp",
                _ref("server", "networkInterfaces", 0, "accessConfigs", 0, "natIp"),
            ),
        ),
    )


def _gcp_network() -> _Spec:
    return _Spec(
        "network",
        "gcp",
        "A custom-mode VPC network with one subnetwork and an SSH firewall rule.",
        (),
        (
            _res(
                "network",
                "main-network",
                "gcp:compute/network:Network",
                note="Custom mode: subnetworks are created explicitly, not one per region.",
                autoCreateSubnetworks=False,
            ),
            _res(
                "subnetwork",
                "main-subnet",
                "gcp:compute/subnetwork:Subnetwork",
                network=_ref("network", "id"),
                ipCidrRange="10.0.1.0/24",
                region="us-central1",
            ),
            _res(
                "allowSsh",
                "allow-ssh",
                "gcp:compute/firewall:Firewall",
                note="35.235.240.0/20 is Identity-Aware Proxy, so SSH is never open to the world.",
                network=_ref("network", "id"),
                allows=_items(_obj("FirewallAllow", protocol="tcp", ports=_items("22"))),
                sourceRanges=_items("35.235.240.0/20"),
            ),
        ),
        (
            ("networkId", _ref("network", "id")),
            ("subnetworkSelfLink", _ref("subnetwork", "selfLink")),
        ),
    )


def _gcp_database() -> _Spec:
    return _Spec(
        "database",
        "gcp",
        "A Cloud SQL for PostgreSQL instance with a database and an application user.",
        (_DB_PASSWORD,),
        (
            _res(
                "instance",
                "postgres",
                "gcp:sql/databaseInstance:DatabaseInstance",
                note="Deletion protection is off so `pulumi destroy` can clean up the example.",
                databaseVersion="POSTGRES_16",
                region="us-central1",
                deletionProtection=False,
                settings=_obj("DatabaseInstanceSettings", tier="db-f1-micro", edition="ENTERPRISE"),
            ),
            _res(
                "database",
                "app-db",
                "gcp:sql/database:Database",
                instance=_ref("instance", "name"),
                name="app",
            ),
            _res(
                "user",
                "app-user",
                "gcp:sql/user:User",
                note="The password is read from encrypted stack config, never from source.",
                instance=_ref("instance", "name"),
                name="app",
                password=_ConfigRef("dbPassword"),
            ),
        ),
        (
            ("connectionName", _ref("instance", "connectionName")),
            ("publicIp", _ref("instance", "publicIpAddress")),
        ),
    )


def _gcp_container() -> _Spec:
    return _Spec(
        "container",
        "gcp",
        "A Cloud Run service running Google's sample container, open to the public.",
        (),
        (
            _res(
                "service",
                "hello",
                "gcp:cloudrunv2/service:Service",
                location="us-central1",
                deletionProtection=False,
                ingress="INGRESS_TRAFFIC_ALL",
                template=_obj(
                    "ServiceTemplate",
                    containers=_items(
                        _obj(
                            "ServiceTemplateContainer",
                            image="us-docker.pkg.dev/cloudrun/container/hello",
                        )
                    ),
                ),
            ),
            _res(
                "publicInvoker",
                "public-invoker",
                "gcp:cloudrunv2/serviceIamMember:ServiceIamMember",
                note="Cloud Run requires authentication unless allUsers may invoke the service.",
                name=_ref("service", "name"),
                location="us-central1",
                role="roles/run.invoker",
                member="allUsers",
            ),
        ),
        (("url", _ref("service", "uri")),),
    )


def _gcp_dns() -> _Spec:
    return _Spec(
        "dns",
        "gcp",
        "A Cloud DNS managed zone with an A record for www.",
        (_DOMAIN,),
        (
            _res(
                "zone",
                "zone",
                "gcp:dns/managedZone:ManagedZone",
                note="Cloud DNS names are fully qualified, hence the trailing dot.",
                dnsName=_join(_ConfigRef("domain"), "."),
                description="Managed by Pulumi",
            ),
            _res(
                "wwwRecord",
                "www",
                "gcp:dns/recordSet:RecordSet",
                managedZone=_ref("zone", "name"),
                name=_join("www.", _ConfigRef("domain"), "."),
                type="A",
                ttl=300,
                rrdatas=_items("203.0.113.10"),
            ),
        ),
        (("nameServers", _ref("zone", "nameServers")),),
    )


def _gcp_website() -> _Spec:
    return _Spec(
        "website",
        "gcp",
        "A static website served from a public Cloud Storage bucket.",
        (),
        (
            _res(
                "siteBucket",
                "website-bucket",
                "gcp:storage/bucket:Bucket",
                location="US",
                uniformBucketLevelAccess=True,
                forceDestroy=True,
                website=_obj(
                    "BucketWebsite", mainPageSuffix="index.html", notFoundPage="index.html"
                ),
            ),
            _res(
                "publicRead",
                "public-read",
                "gcp:storage/bucketIAMMember:BucketIAMMember",
                note="Anyone may read objects; nobody anonymous may list or write.",
                bucket=_ref("siteBucket", "name"),
                role="roles/storage.objectViewer",
                member="allUsers",
            ),
            _res(
                "indexPage",
                "index-html",
                "gcp:storage/bucketObject:BucketObject",
                bucket=_ref("siteBucket", "name"),
                name="index.html",
                content=_INDEX_HTML,
                contentType="text/html",
            ),
        ),
        (
            (
                "url",
                _join("https://storage.googleapis.com/", _ref("siteBucket", "name"), "/index.html"),
            ),
        ),
    )


_CATALOGUE = {
    ("bucket", "aws"): _aws_bucket,
    ("vm", "aws"): _aws_vm,
    ("network", "aws"): _aws_network,
    ("database", "aws"): _aws_database,
    ("container", "aws"): _aws_container,
    ("dns", "aws"): _aws_dns,
    ("website", "aws"): _aws_website,
    ("bucket", "azure"): _azure_bucket,
    ("vm", "azure"): _azure_vm,
    ("network", "azure"): _azure_network,
    ("database", "azure"): _azure_database,
    ("container", "azure"): _azure_container,
    ("dns", "azure"): _azure_dns,
    ("website", "azure"): _azure_website,
    ("bucket", "gcp"): _gcp_bucket,
    ("vm", "gcp"): _gcp_vm,
    ("network", "gcp"): _gcp_network,
    ("database", "gcp"): _gcp_database,
    ("container", "gcp"): _gcp_container,
    ("dns", "gcp"): _gcp_dns,
    ("website", "gcp"): _gcp_website,
}


# ---------------------------------------------------------------------------------------
# Shared helpers for the renderers.


def _parse_token(token: str) -> _Token:
    """Split a type token into package, module and member."""
    package, module, member = token.split(":")
    return _Token(package, module.split("/")[0], member)


def _snake(name: str) -> str:
    """Python spelling of a schema name, following Pulumi's rule for acronyms and digits."""
    out: list[str] = []
    for index, char in enumerate(name):
        if char.isupper():
            previous = name[index - 1] if index else ""
            following = name[index + 1] if index + 1 < len(name) else ""
            if previous and (
                previous.islower()
                or previous.isdigit()
                or (previous.isupper() and following.islower())
            ):
                out.append("_")
            out.append(char.lower())
        else:
            out.append(char)
    return "".join(out)


def _pascal(name: str) -> str:
    """Go and C# spelling of a schema name."""
    return name[:1].upper() + name[1:]


def _number(value: int | float) -> str:
    """A numeric literal; whole floats drop the fraction, which every target accepts."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _quote(text: str) -> str:
    """A double-quoted literal that TypeScript, Python, Go, C# and YAML all read alike."""
    return json.dumps(text)


def _walk(value: _Value) -> Iterator[_Value]:
    """The value and every value nested inside it."""
    yield value
    children: Sequence[_Value] = ()
    if isinstance(value, _Obj):
        children = [v for _, v in value.fields]
    elif isinstance(value, _StringMap):
        children = [v for _, v in value.entries]
    elif isinstance(value, _Items):
        children = value.values
    elif isinstance(value, _Interpolate):
        children = value.parts
    for child in children:
        yield from _walk(child)


def _spec_values(spec: _Spec) -> Iterator[_Value]:
    """Every value in the program's arguments and outputs."""
    for step in spec.steps:
        for _, value in step.args:
            yield from _walk(value)
    for _, value in spec.exports:
        yield from _walk(value)


def _referenced(spec: _Spec) -> frozenset[str]:
    """Variables some later code reads; Go must discard the others."""
    names = {v.target for v in _spec_values(spec) if isinstance(v, _Ref)}
    for step in spec.steps:
        if isinstance(step, _Resource):
            names.update(step.depends_on)
    return frozenset(names)


def _modules(spec: _Spec) -> list[str]:
    """Provider modules the program uses, sorted."""
    return sorted({_parse_token(step.token).module for step in spec.steps})


_RESERVED = frozenset(
    [
        *keyword.kwlist,
        # Names the renderers declare themselves, provider aliases and lambda parameters.
        "aws", "azure", "gcp", "pulumi", "config", "cfg", "ctx", "err", "value", "result",
        # Keywords and predeclared names of the other target languages.
        "base", "case", "chan", "class", "const", "default", "defer", "delete", "event",
        "export", "fallthrough", "func", "function", "go", "goto", "interface", "let", "map",
        "new", "object", "package", "range", "select", "string", "switch", "this", "type",
        "var", "void",
    ]
)  # fmt: skip


def _validate(spec: _Spec) -> None:
    """Raise ValueError when a description could render to code that does not compile."""
    modules = set(_modules(spec))
    configs = {c.key: c for c in spec.configs}
    seen: dict[str, _Step] = {}
    yaml_names: set[str] = set(configs)
    problems: list[str] = []
    for step in spec.steps:
        names = {step.var, _snake(step.var)}
        if names & (_RESERVED | modules) or step.var in seen:
            problems.append(f"bad or duplicate variable {step.var!r}")
        yaml_name = step.name if isinstance(step, _Resource) else step.var
        if yaml_name in yaml_names:
            problems.append(f"duplicate name {yaml_name!r}")
        yaml_names.add(yaml_name)
        for _, value in step.args:
            for item in _walk(value):
                if isinstance(item, _Ref) and item.target not in seen:
                    problems.append(f"{step.var} reads {item.target} before it exists")
        if isinstance(step, _Resource):
            problems.extend(
                f"{step.var} depends on unknown {target}"
                for target in step.depends_on
                if not isinstance(seen.get(target), _Resource)
            )
        seen[step.var] = step
    used_configs = set()
    for item in _spec_values(spec):
        if isinstance(item, _Ref) and item.target not in seen:
            problems.append(f"unknown reference {item.target}")
        elif isinstance(item, _Ref) and (not item.path or not isinstance(item.path[0], str)):
            problems.append(f"reference to {item.target} needs a property name first")
        elif isinstance(item, _ConfigRef):
            used_configs.add(item.key)
        elif isinstance(item, _Items) and not item.values:
            problems.append("empty lists have no element type")
    for config in spec.configs:
        if config.key not in used_configs:
            problems.append(f"config {config.key} is never used")
        if config.secret and config.default is not None:
            problems.append(f"secret {config.key} must not have a default")
        if {config.key, _snake(config.key)} & _RESERVED or config.key in seen:
            problems.append(f"bad config key {config.key!r}")
    problems.extend(f"unknown config {key}" for key in used_configs - set(configs))
    # TypeScript exports are module-level constants beside the variables.
    taken = _RESERVED | modules | set(seen) | set(configs)
    problems.extend(f"export {name} clashes" for name, _ in spec.exports if name in taken)
    unused_calls = [
        step.var
        for step in spec.steps
        if isinstance(step, _Invoke) and step.var not in _referenced(spec)
    ]
    problems.extend(f"function result {var} is never used" for var in unused_calls)
    if problems:
        raise ValueError(f"{spec.cloud} {spec.resource}: " + "; ".join(problems))


def _bracketed(
    opener: str,
    items: Sequence[str],
    closer: str,
    depth: int,
    *,
    unit: str,
    inline: bool,
    pad: str = "",
    trailing: str = ",",
    width: int = 80,
    lead: int = 0,
) -> str:
    """Items on one line when they fit, otherwise one per line with a trailing separator.

    lead counts what precedes the opener on its line (a key, an assignment), and one more
    column is kept for the separator that follows the closer.
    """
    if not items:
        return opener + closer
    if inline:
        flat = f"{opener}{pad}{', '.join(items)}{pad}{closer}"
        if "\n" not in flat and len(unit) * depth + lead + len(flat) < width:
            return flat
    inner = unit * (depth + 1)
    body = "".join(f"{inner}{item}{trailing}\n" for item in items)
    return f"{opener}\n{body}{unit * depth}{closer}"


def _is_invoke(spec: _Spec, var: str) -> bool:
    """Whether a variable holds a function result rather than a resource."""
    return any(isinstance(s, _Invoke) and s.var == var for s in spec.steps)


# ---------------------------------------------------------------------------------------
# TypeScript


_TS_UNIT = "    "
_TS_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def _ts_member(spec: _Spec, token: str) -> str:
    """Expression naming a class or function of the provider SDK."""
    parts = _parse_token(token)
    alias = _PROVIDERS[spec.cloud].alias
    return f"{alias}.{parts.module}.{parts.member}" if alias else f"{parts.module}.{parts.member}"


def _ts_path(path: Sequence[str | int], *, optional: bool) -> str:
    """Property and index accessors; optional chaining after the first step is type-safe."""
    out = ""
    for index, step in enumerate(path):
        chain = "?." if optional and index else ("" if isinstance(step, int) else ".")
        out += f"{chain}[{step}]" if isinstance(step, int) else f"{chain}{step}"
    return out


def _ts_ref(spec: _Spec, ref: _Ref) -> str:
    if _is_invoke(spec, ref.target):
        return f"{ref.target}.apply(result => result{_ts_path(ref.path, optional=True)})"
    head = f"{ref.target}.{ref.path[0]}"
    if len(ref.path) == 1:
        return head
    return f"{head}.apply(value => value{_ts_path(ref.path[1:], optional=True)})"


def _ts_value(spec: _Spec, value: _Value, depth: int, lead: int = 0) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, _ConfigRef):
        return value.key
    if isinstance(value, _Ref):
        return _ts_ref(spec, value)
    if isinstance(value, _StringAsset):
        return f"new pulumi.asset.StringAsset({_quote(value.text)})"
    if isinstance(value, _Interpolate):
        pieces = []
        for part in value.parts:
            if isinstance(part, str):
                escaped = json.dumps(part)[1:-1].replace('\\"', '"')
                pieces.append(escaped.replace("`", "\\`").replace("${", "\\${"))
            else:
                pieces.append("${" + _ts_value(spec, part, depth) + "}")
        return "pulumi.interpolate`" + "".join(pieces) + "`"
    if isinstance(value, _Items):
        items = [_ts_value(spec, v, depth + 1) for v in value.values]
        return _bracketed("[", items, "]", depth, unit=_TS_UNIT, inline=True, lead=lead)
    fields = value.fields if isinstance(value, _Obj) else value.entries
    return _ts_object(spec, fields, depth, inline=True, lead=lead)


def _ts_object(spec: _Spec, fields: _Fields, depth: int, *, inline: bool, lead: int = 0) -> str:
    items = []
    for key, value in fields:
        name = key if _TS_IDENTIFIER.fullmatch(key) else _quote(key)
        items.append(f"{name}: {_ts_value(spec, value, depth + 1, len(name) + 2)}")
    return _bracketed("{", items, "}", depth, unit=_TS_UNIT, inline=inline, pad=" ", lead=lead)


def _render_typescript(spec: _Spec) -> str:
    provider = _PROVIDERS[spec.cloud]
    lines = [f"// {spec.summary}", 'import * as pulumi from "@pulumi/pulumi";']
    if provider.alias:
        lines.append(f'import * as {provider.alias} from "{provider.npm}";')
    else:
        lines.extend(
            f'import * as {module} from "{provider.npm}/{module}";' for module in _modules(spec)
        )
    lines.append("")
    if spec.configs:
        lines.append("const config = new pulumi.Config();")
        for config in spec.configs:
            if config.secret:
                lines.append(f'const {config.key} = config.requireSecret("{config.key}");')
            elif config.default is None:
                lines.append(f'const {config.key} = config.require("{config.key}");')
            else:
                lines.append(
                    f'const {config.key} = config.get("{config.key}") ?? {_quote(config.default)};'
                )
        lines.append("")
    for step in spec.steps:
        if step.note:
            lines.append(f"// {step.note}")
        if isinstance(step, _Invoke):
            call = _ts_member(spec, step.token) + "Output"
            args = _ts_object(spec, step.args, 0, inline=False)
            lines.append(f"const {step.var} = {call}({args});")
        else:
            call = f"new {_ts_member(spec, step.token)}({_quote(step.name)}"
            if step.args:
                call += ", " + _ts_object(spec, step.args, 0, inline=False)
            if step.depends_on:
                call += ", { dependsOn: [" + ", ".join(step.depends_on) + "] }"
            lines.append(f"const {step.var} = {call});")
        lines.append("")
    lines.extend(
        f"export const {name} = {_ts_value(spec, value, 0, len(name) + 16)};"
        for name, value in spec.exports
    )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Python


_PY_UNIT = "    "


def _py_member(spec: _Spec, token: str, *, function: bool = False) -> str:
    parts = _parse_token(token)
    member = _snake(parts.member) + "_output" if function else parts.member
    alias = _PROVIDERS[spec.cloud].alias
    return f"{alias}.{parts.module}.{member}" if alias else f"{parts.module}.{member}"


def _py_quote(text: str) -> str:
    """Single quotes spare the backslashes when the text itself is full of double quotes."""
    if '"' in text and "'" not in text and "\\" not in text and text.isprintable():
        return f"'{text}'"
    return _quote(text)


def _py_path(path: Sequence[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{_snake(p)}" for p in path)


def _py_ref(spec: _Spec, ref: _Ref) -> str:
    target = _snake(ref.target)
    if _is_invoke(spec, ref.target):
        return f"{target}.apply(lambda result: result{_py_path(ref.path)})"
    head = f"{target}{_py_path(ref.path[:1])}"
    if len(ref.path) == 1:
        return head
    return f"{head}.apply(lambda value: value{_py_path(ref.path[1:])})"


def _py_value(spec: _Spec, value: _Value, depth: int, lead: int = 0) -> str:
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return _py_quote(value)
    if isinstance(value, _ConfigRef):
        return _snake(value.key)
    if isinstance(value, _Ref):
        return _py_ref(spec, value)
    if isinstance(value, _StringAsset):
        return f"pulumi.StringAsset({_quote(value.text)})"
    if isinstance(value, _Interpolate):
        parts = [_py_value(spec, part, depth + 1) for part in value.parts]
        opener = "pulumi.Output.concat("
        return _bracketed(
            opener, parts, ")", depth, unit=_PY_UNIT, inline=True, width=88, lead=lead
        )
    if isinstance(value, _Items):
        items = [_py_value(spec, v, depth + 1) for v in value.values]
        return _bracketed("[", items, "]", depth, unit=_PY_UNIT, inline=True, width=88, lead=lead)
    if isinstance(value, _Obj):
        entries = [(_snake(k), v) for k, v in value.fields]
    else:
        entries = list(value.entries)
    items = [f"{_quote(k)}: {_py_value(spec, v, depth + 1, len(k) + 4)}" for k, v in entries]
    return _bracketed("{", items, "}", depth, unit=_PY_UNIT, inline=True, width=88, lead=lead)


def _py_call(target: str, callee: str, arguments: Sequence[str]) -> str:
    """An assignment from a call: one line for a single short argument, else one per line."""
    is_short = len(arguments) == 1 and len(f"{target} = {callee}({arguments[0]})") <= 88
    call = _bracketed(f"{callee}(", arguments, ")", 0, unit=_PY_UNIT, inline=is_short, width=999)
    return f"{target} = {call}"


def _render_python(spec: _Spec) -> str:
    provider = _PROVIDERS[spec.cloud]
    lines = [f'"""{spec.summary}"""', "", "import pulumi"]
    if provider.alias:
        lines.append(f"import {provider.python_module} as {provider.alias}")
    else:
        lines.append(f"from {provider.python_module} import {', '.join(_modules(spec))}")
    lines.append("")
    if spec.configs:
        lines.append("config = pulumi.Config()")
        for config in spec.configs:
            name = _snake(config.key)
            if config.secret:
                lines.append(f'{name} = config.require_secret("{config.key}")')
            elif config.default is None:
                lines.append(f'{name} = config.require("{config.key}")')
            else:
                lines.append(f'{name} = config.get("{config.key}") or {_quote(config.default)}')
        lines.append("")
    for step in spec.steps:
        if step.note:
            lines.append(f"# {step.note}")
        arguments = [
            f"{_snake(k)}={_py_value(spec, v, 1, len(_snake(k)) + 1)}" for k, v in step.args
        ]
        if isinstance(step, _Invoke):
            callee = _py_member(spec, step.token, function=True)
            lines.append(_py_call(_snake(step.var), callee, arguments))
        else:
            arguments.insert(0, _quote(step.name))
            if step.depends_on:
                needs = ", ".join(_snake(var) for var in step.depends_on)
                arguments.append(f"opts=pulumi.ResourceOptions(depends_on=[{needs}])")
            callee = _py_member(spec, step.token)
            lines.append(_py_call(_snake(step.var), callee, arguments))
        lines.append("")
    for name, value in spec.exports:
        arguments = [_quote(name), _py_value(spec, value, 1, len(name) + 4)]
        lines.append(
            _bracketed("pulumi.export(", arguments, ")", 0, unit=_PY_UNIT, inline=True, width=88)
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Go


def _go_struct(opener: str, entries: Sequence[tuple[str, str]], depth: int) -> str:
    """A composite literal laid out the way gofmt aligns runs of one-line entries."""
    if not entries:
        return opener + "}"
    inner = "\t" * (depth + 1)
    lines: list[str] = []
    run: list[tuple[str, str]] = []

    def flush() -> None:
        width = max((len(key) for key, _ in run), default=0)
        lines.extend(f"{inner}{key.ljust(width)} {text}," for key, text in run)
        run.clear()

    for key, text in entries:
        if "\n" in text:
            flush()
            lines.append(f"{inner}{key} {text},")
        else:
            run.append((key, text))
    flush()
    return opener + "\n" + "\n".join(lines) + "\n" + "\t" * depth + "}"


def _go_string(text: str) -> str:
    """A raw string literal when the text is full of double quotes, else an escaped one."""
    if '"' in text and "`" not in text and text.isprintable():
        return f"`{text}`"
    return _quote(text)


def _go_path(path: Sequence[str | int]) -> str:
    return "".join(
        f".Index(pulumi.Int({p}))" if isinstance(p, int) else f".{_pascal(p)}()" for p in path
    )


def _go_ref(spec: _Spec, ref: _Ref) -> str:
    if _is_invoke(spec, ref.target):
        return ref.target + _go_path(ref.path)
    first = ref.path[0]
    head = ".ID()" if first == "id" else f".{_pascal(str(first))}"
    return ref.target + head + _go_path(ref.path[1:])


def _go_value(spec: _Spec, value: _Value, module: str, depth: int) -> str:
    configs = {c.key: c for c in spec.configs}
    if isinstance(value, bool):
        return f"pulumi.Bool({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"pulumi.Int({value})"
    if isinstance(value, float):
        return f"pulumi.Float64({_number(value)})"
    if isinstance(value, str):
        return f"pulumi.String({_go_string(value)})"
    if isinstance(value, _ConfigRef):
        # Secrets are already outputs; plain config values are Go strings.
        return value.key if configs[value.key].secret else f"pulumi.String({value.key})"
    if isinstance(value, _Ref):
        return _go_ref(spec, value)
    if isinstance(value, _StringAsset):
        return f"pulumi.NewStringAsset({_quote(value.text)})"
    if isinstance(value, _Interpolate):
        template = ""
        arguments = []
        for part in value.parts:
            if isinstance(part, str):
                template += part.replace("%", "%%")
            else:
                template += "%v"
                arguments.append(part.key if isinstance(part, _ConfigRef) else _go_ref(spec, part))
        return f"pulumi.Sprintf({', '.join([_go_string(template), *arguments])})"
    if isinstance(value, _Obj):
        entries = [
            (f"{_pascal(k)}:", _go_value(spec, v, module, depth + 1)) for k, v in value.fields
        ]
        return _go_struct(f"&{module}.{value.go_type or value.type_name}Args{{", entries, depth)
    if isinstance(value, _StringMap):
        entries = [
            (f"{_quote(k)}:", _go_value(spec, v, module, depth + 1)) for k, v in value.entries
        ]
        return _go_struct("pulumi.StringMap{", entries, depth)
    items = [_go_value(spec, v, module, depth + 1) for v in value.values]
    first = value.values[0]
    if isinstance(first, _Obj):
        opener = f"{module}.{first.go_type or first.type_name}Array{{"
        return _bracketed(opener, items, "}", depth, unit="\t", inline=False)
    kind = "Int" if isinstance(first, int) and not isinstance(first, bool) else "String"
    return _bracketed(f"pulumi.{kind}Array{{", items, "}", depth, unit="\t", inline=True, width=100)


def _render_go(spec: _Spec) -> str:
    provider = _PROVIDERS[spec.cloud]
    imports = {provider.go_path.format(module=module) for module in _modules(spec)}
    imports.add("github.com/pulumi/pulumi/sdk/v3/go/pulumi")
    if spec.configs:
        imports.add("github.com/pulumi/pulumi/sdk/v3/go/pulumi/config")
    lines = [f"// {spec.summary}", "package main", "", "import ("]
    lines.extend(f"\t{_quote(path)}" for path in sorted(imports))
    lines += [")", "", "func main() {", "\tpulumi.Run(func(ctx *pulumi.Context) error {"]
    body: list[str] = []
    if spec.configs:
        body.append('cfg := config.New(ctx, "")')
        for config in spec.configs:
            if config.secret:
                body.append(f'{config.key} := cfg.RequireSecret("{config.key}")')
            elif config.default is None:
                body.append(f'{config.key} := cfg.Require("{config.key}")')
            else:
                body += [
                    f'{config.key} := cfg.Get("{config.key}")',
                    f'if {config.key} == "" {{',
                    f"\t{config.key} = {_quote(config.default)}",
                    "}",
                ]
        body.append("")
    used = _referenced(spec)
    is_err_declared = False
    for step in spec.steps:
        module = _parse_token(step.token).module
        if step.note:
            body.append(f"// {step.note}")
        entries = [(f"{_pascal(k)}:", _go_value(spec, v, module, 1)) for k, v in step.args]
        if isinstance(step, _Invoke):
            opener = f"{module}.{step.go_function}OutputArgs{{"
            call = f"{module}.{step.go_function}Output(ctx, {_go_struct(opener, entries, 0)})"
            body += [f"{step.var} := {call}", ""]
            continue
        member = _parse_token(step.token).member
        args = _go_struct(f"&{module}.{member}Args{{", entries, 0) if step.args else "nil"
        call = f"{module}.New{member}(ctx, {_quote(step.name)}, {args}"
        if step.depends_on:
            call += f", pulumi.DependsOn([]pulumi.Resource{{{', '.join(step.depends_on)}}})"
        if step.var in used:
            assign = f"{step.var}, err :="
        else:
            # Go rejects unused variables, and := needs at least one new name on the left.
            assign = "_, err =" if is_err_declared else "_, err :="
        is_err_declared = True
        body += [f"{assign} {call})", "if err != nil {", "\treturn err", "}", ""]
    body.extend(
        f"ctx.Export({_quote(name)}, {_go_value(spec, value, '', 0)})"
        for name, value in spec.exports
    )
    body.append("return nil")
    lines.extend(("\t\t" + line.replace("\n", "\n\t\t")) if line else "" for line in body)
    lines += ["\t})", "}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# C#


_CS_UNIT = "    "


def _cs_namespace(spec: _Spec, token: str) -> str:
    provider = _PROVIDERS[spec.cloud]
    return f"{provider.csharp_alias}.{_CSHARP_MODULES[_parse_token(token).module]}"


def _cs_path(path: Sequence[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{_pascal(p)}" for p in path)


def _cs_ref(spec: _Spec, ref: _Ref) -> str:
    if _is_invoke(spec, ref.target):
        return f"{ref.target}.Apply(result => result{_cs_path(ref.path)})"
    head = f"{ref.target}{_cs_path(ref.path[:1])}"
    if len(ref.path) == 1:
        return head
    return f"{head}.Apply(value => value{_cs_path(ref.path[1:])})"


def _cs_value(spec: _Spec, value: _Value, namespace: str, depth: int, *, in_call: bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, _ConfigRef):
        return value.key
    if isinstance(value, _Ref):
        return _cs_ref(spec, value)
    if isinstance(value, _StringAsset):
        return f"new StringAsset({_quote(value.text)})"
    if isinstance(value, _Interpolate):
        text = ""
        for part in value.parts:
            if isinstance(part, str):
                text += json.dumps(part)[1:-1].replace("{", "{{").replace("}", "}}")
            else:
                text += "{" + _cs_value(spec, part, namespace, depth, in_call=in_call) + "}"
        return f'Output.Format($"{text}")'
    if isinstance(value, _Obj):
        # Output-form function arguments take the "InputArgs" flavour of nested types.
        suffix = "InputArgs" if in_call else "Args"
        type_name = f"{namespace}.Inputs.{value.type_name}{suffix}"
        if not value.fields:
            return f"new {type_name}()"
        items = [
            f"{_pascal(k)} = {_cs_value(spec, v, namespace, depth + 1, in_call=in_call)}"
            for k, v in value.fields
        ]
        return _cs_initializer(f"new {type_name}", items, depth)
    if isinstance(value, _StringMap):
        items = [
            f"{{ {_quote(k)}, {_cs_value(spec, v, namespace, depth + 1, in_call=in_call)} }}"
            for k, v in value.entries
        ]
        return _cs_initializer("new InputMap<string>", items, depth)
    items = [_cs_value(spec, v, namespace, depth + 1, in_call=in_call) for v in value.values]
    literal = [isinstance(v, str | int | float) for v in value.values]
    # new[] needs one element type; mixing literals and outputs needs an explicit list.
    opener = "new[]" if all(literal) or not any(literal) else "new InputList<string>"
    if any(isinstance(v, _Obj) for v in value.values):
        return _cs_initializer(opener, items, depth)
    return _bracketed(f"{opener} {{", items, "}", depth, unit=_CS_UNIT, inline=True, pad=" ")


def _cs_initializer(opener: str, items: Sequence[str], depth: int) -> str:
    """An object or collection initializer with braces on their own lines."""
    return _bracketed(
        f"{opener}\n{_CS_UNIT * depth}{{", items, "}", depth, unit=_CS_UNIT, inline=False
    )


def _render_csharp(spec: _Spec) -> str:
    provider = _PROVIDERS[spec.cloud]
    lines = [
        f"// {spec.summary}",
        "using System.Collections.Generic;",
        "using Pulumi;",
        f"using {provider.csharp_alias} = {provider.csharp_namespace};",
        "",
        "return await Deployment.RunAsync(() =>",
        "{",
    ]
    body: list[str] = []
    if spec.configs:
        body.append("var config = new Config();")
        for config in spec.configs:
            if config.secret:
                body.append(f'var {config.key} = config.RequireSecret("{config.key}");')
            elif config.default is None:
                body.append(f'var {config.key} = config.Require("{config.key}");')
            else:
                body.append(
                    f'var {config.key} = config.Get("{config.key}") ?? {_quote(config.default)};'
                )
        body.append("")
    for step in spec.steps:
        namespace = _cs_namespace(spec, step.token)
        member = _pascal(_parse_token(step.token).member)
        if step.note:
            body.append(f"// {step.note}")
        items = [
            f"{_pascal(k)} = {_cs_value(spec, v, namespace, 1, in_call=isinstance(step, _Invoke))}"
            for k, v in step.args
        ]
        if isinstance(step, _Invoke):
            args = _cs_initializer("new()", items, 0)
            body += [f"var {step.var} = {namespace}.{member}.Invoke({args});", ""]
            continue
        call = f"var {step.var} = new {namespace}.{member}({_quote(step.name)}"
        if step.args:
            call += ", " + _cs_initializer("new()", items, 0)
        if step.depends_on:
            opener = f"DependsOn =\n{_CS_UNIT}{{"
            needs = _bracketed(opener, step.depends_on, "}", 1, unit=_CS_UNIT, inline=False)
            call += ", " + _cs_initializer("new CustomResourceOptions", [needs], 0)
        body += [f"{call});", ""]
    outputs = [
        f"[{_quote(name)}] = {_cs_value(spec, value, '', 1, in_call=False)}"
        for name, value in spec.exports
    ]
    body.append("return " + _cs_initializer("new Dictionary<string, object?>", outputs, 0) + ";")
    lines.extend((_CS_UNIT + line.replace("\n", "\n" + _CS_UNIT)) if line else "" for line in body)
    lines.append("});")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# YAML


_YamlNode: TypeAlias = str | int | float | bool | list["_YamlNode"] | dict[str, "_YamlNode"]
_YAML_PLAIN = re.compile(r"[A-Za-z_/$][A-Za-z0-9_./${}\[\]:*@ -]*")
_YAML_KEYWORDS = frozenset(["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"])


def _yaml_expression(spec: _Spec, ref: _Ref) -> str:
    step = next(s for s in spec.steps if s.var == ref.target)
    root = step.name if isinstance(step, _Resource) else step.var
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in ref.path)
    return root + path


def _yaml_node(spec: _Spec, value: _Value) -> _YamlNode:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, _ConfigRef):
        return "${" + value.key + "}"
    if isinstance(value, _Ref):
        return "${" + _yaml_expression(spec, value) + "}"
    if isinstance(value, _StringAsset):
        return {"fn::stringAsset": value.text}
    if isinstance(value, _Interpolate):
        text = ""
        for part in value.parts:
            if isinstance(part, str):
                text += part.replace("$", "$$")
            elif isinstance(part, _ConfigRef):
                text += "${" + part.key + "}"
            else:
                text += "${" + _yaml_expression(spec, part) + "}"
        return text
    if isinstance(value, _Items):
        return [_yaml_node(spec, v) for v in value.values]
    fields = value.fields if isinstance(value, _Obj) else value.entries
    return {k: _yaml_node(spec, v) for k, v in fields}


def _yaml_scalar(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    is_plain = (
        _YAML_PLAIN.fullmatch(value) is not None
        and value.lower() not in _YAML_KEYWORDS
        and ": " not in value
        and not value.endswith((":", " "))
    )
    if is_plain:
        return value
    if '"' in value and value.isprintable():
        # Single-quoted scalars escape nothing but the quote itself, so JSON stays legible.
        return "'" + value.replace("'", "''") + "'"
    return _quote(value)


def _yaml_lines(node: _YamlNode, indent: int) -> list[str]:
    """Block-style lines for a mapping or sequence."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(node, dict):
        for key, child in node.items():
            if isinstance(child, dict | list) and child:
                lines.append(f"{pad}{_yaml_scalar(key)}:")
                lines.extend(_yaml_lines(child, indent + 1))
            else:
                lines.append(f"{pad}{_yaml_scalar(key)}: {_yaml_inline(child)}")
    elif isinstance(node, list):
        for child in node:
            if isinstance(child, dict | list) and child:
                nested = _yaml_lines(child, indent + 1)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_yaml_inline(child)}")
    return lines


def _yaml_inline(node: _YamlNode) -> str:
    if isinstance(node, dict):
        return "{}"
    if isinstance(node, list):
        return "[]"
    return _yaml_scalar(node)


def _render_yaml(spec: _Spec) -> str:
    lines = [
        f"# {spec.summary}",
        f"name: {spec.cloud}-{spec.resource}",
        "runtime: yaml",
        f"description: {_yaml_scalar(spec.summary)}",
    ]
    if spec.configs:
        config: dict[str, _YamlNode] = {}
        for item in spec.configs:
            entry: dict[str, _YamlNode] = {"type": "string"}
            if item.secret:
                entry["secret"] = True
            if item.default is not None:
                entry["default"] = item.default
            config[item.key] = entry
        lines += ["config:", *_yaml_lines(config, 1)]
    calls = [step for step in spec.steps if isinstance(step, _Invoke)]
    if calls:
        lines.append("variables:")
        for call in calls:
            if call.note:
                lines.append(f"  # {call.note}")
            invoke: dict[str, _YamlNode] = {
                "function": call.token,
                "arguments": {k: _yaml_node(spec, v) for k, v in call.args},
            }
            lines.extend(_yaml_lines({call.var: {"fn::invoke": invoke}}, 1))
    lines.append("resources:")
    for step in spec.steps:
        if not isinstance(step, _Resource):
            continue
        if step.note:
            lines.append(f"  # {step.note}")
        declaration: dict[str, _YamlNode] = {"type": step.token}
        if step.args:
            declaration["properties"] = {k: _yaml_node(spec, v) for k, v in step.args}
        if step.depends_on:
            needs: list[_YamlNode] = [
                "${" + _yaml_expression(spec, _Ref(var, ())) + "}" for var in step.depends_on
            ]
            declaration["options"] = {"dependsOn": needs}
        lines.extend(_yaml_lines({step.name: declaration}, 1))
    outputs = {name: _yaml_node(spec, value) for name, value in spec.exports}
    lines += ["outputs:", *_yaml_lines(outputs, 1)]
    return "\n".join(lines) + "\n"


_RENDERERS = {
    "typescript": _render_typescript,
    "python": _render_python,
    "go": _render_go,
    "csharp": _render_csharp,
    "yaml": _render_yaml,
}


# ---------------------------------------------------------------------------------------
# Instructions, ids and the public entry points.


def _instructions(spec: _Spec, language: str) -> str:
    provider = _PROVIDERS[spec.cloud]
    project = f"{spec.cloud}-{spec.resource}"
    template = f"{provider.cloud}-{language}"
    language_name = _LANGUAGE_NAMES[language]
    program_file = _PROGRAM_FILES[language]
    steps = [
        f"Create a project from the `{template}` template: "
        f"`mkdir {project} && cd {project} && pulumi new {template}`.",
        f"Before deploying, {provider.login}.",
        f"Set {provider.location_purpose}: `pulumi config set {provider.location_key} "
        f"{provider.location_example}`.",
    ]
    for config in spec.configs:
        if config.secret:
            steps.append(
                f"Store {config.purpose} as an encrypted secret: "
                f"`pulumi config set --secret {config.key}` (you will be prompted for the value)."
            )
        elif config.default is None:
            steps.append(
                f"Set {config.purpose}: `pulumi config set {config.key} {config.example}`."
            )
        else:
            steps.append(
                f"Optionally change {config.purpose} (default `{config.default}`): "
                f"`pulumi config set {config.key} {config.example or config.default}`."
            )
    replace = f"Replace the contents of `{program_file}` with the program below"
    if language == "go":
        replace += ", then run `go mod tidy` to fetch the provider packages"
    elif language == "yaml":
        replace += f" (its `name` is `{project}`, the name `pulumi new` gave the project)"
    steps += [
        replace + ".",
        "Preview and deploy with `pulumi up`.",
        "Read the results with `pulumi stack output` "
        f"({', '.join(name for name, _ in spec.exports)}).",
    ]
    numbered = [f"{index}. {text}" for index, text in enumerate(steps, start=1)]
    intro = f"Here is the {language_name} program for `{program_file}`:"
    return "\n".join([spec.summary, "", *numbered, "", intro])


def _program_id(request: ProgramRequest, salt: str) -> str:
    """Seven URL-safe characters from a hash, so equal requests and salts get equal ids."""
    material = f"{request.resource}|{request.cloud}|{request.language}|{salt}".encode()
    digest = hashlib.sha256(material).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:7]


def generate(request: ProgramRequest, salt: str = "") -> GeneratedProgram:
    """Render the program for a request; salt varies the id between conversations."""
    if request.language not in LANGUAGES:
        raise ValueError(f"unsupported language {request.language!r}")
    builder = _CATALOGUE.get((request.resource, request.cloud))
    if builder is None:
        raise ValueError(f"no program for {request.resource!r} on {request.cloud!r}")
    spec = builder()
    _validate(spec)
    return GeneratedProgram(
        code=_RENDERERS[request.language](spec),
        instructions=_instructions(spec, request.language),
        language=request.language,
        program_id=_program_id(request, salt),
        resource=request.resource,
        cloud=request.cloud,
    )


# ---------------------------------------------------------------------------------------
# Understanding the request.

# Ordered so longer, more specific phrases claim their words before generic ones do.
_SYNONYMS: tuple[tuple[str, str, str | None], ...] = (
    (
        r"static\s+web\s*sites?|static\s+sites?|web\s*sites?|landing\s+pages?|\bsites?\b",
        "website",
        None,
    ),
    (r"google\s+cloud\s+storage|cloud\s+storage|\bgcs\b", "bucket", "gcp"),
    (r"blob\s+(?:storage|containers?)|storage\s+accounts?|azure\s+storage", "bucket", "azure"),
    (r"\bs3\b", "bucket", "aws"),
    (r"\bbuckets?\b|object\s+storage", "bucket", None),
    (r"cloud\s+sql", "database", "gcp"),
    (r"azure\s+sql|azure\s+database", "database", "azure"),
    (r"\brds\b|\baurora\b", "database", "aws"),
    (r"\bpostgres(?:ql)?\b|\bmysql\b|\bdatabases?\b|\bdbs?\b|\bsql\s+server\b", "database", None),
    (r"cloud\s+run|\bgke\b", "container", "gcp"),
    (r"container\s+apps?|container\s+instances?|\baci\b|\baks\b", "container", "azure"),
    (r"\becs\b|\bfargate\b|\beks\b", "container", "aws"),
    (r"\bcontaineri[sz]ed\b|\bcontainers?\b|\bdocker\b", "container", None),
    (r"route\s*53", "dns", "aws"),
    (r"cloud\s+dns", "dns", "gcp"),
    (r"azure\s+dns", "dns", "azure"),
    (r"\bdns\b|\bhosted\s+zones?\b|\bdomains?\b", "dns", None),
    (r"\bec2\b", "vm", "aws"),
    (r"compute\s+engine|\bgce\b", "vm", "gcp"),
    (r"virtual\s+machines?|\bvms?\b|web\s+servers?|compute\s+instances?", "vm", None),
    (r"virtual\s+networks?|\bvnets?\b", "network", "azure"),
    (r"\bvpcs?\b", "network", "aws"),
    (r"\bnetwork(?:s|ing)?\b|\bsubnets?\b", "network", None),
)
_CLOUD_WORDS: tuple[tuple[str, str], ...] = (
    (r"\baws\b|\bamazon\b", "aws"),
    (r"\bazure\b|\bmicrosoft\b", "azure"),
    (r"\bgcp\b|\bgoogle\b", "gcp"),
)
_LANGUAGE_WORDS: tuple[tuple[str, str], ...] = (
    (r"\btypescript\b|\bts\b|\bjavascript\b|\bjs\b|\bnode\.?js\b", "typescript"),
    (r"\bpython\b|\bpy\b", "python"),
    (
        r"\bgolang\b|\b(?:in|with|using|use|for)\s+go\b"
        r"|\bgo\s+(?:program|code|version|module|language|sdk|example|snippet)\b",
        "go",
    ),
    (r"(?<![\w#])c#|\bc\s+sharp\b|\bcsharp\b|\bdotnet\b|(?<![\w.])\.net\b", "csharp"),
    (r"\bya?ml\b", "yaml"),
)
# Words that only make sense when someone wants code.
_STRONG_INTENT = re.compile(
    r"\b(?:write|generate|code|program|snippet|example|template|scaffold|iac)\b"
    r"|\bshow\s+me\b|\bgive\s+me\b"
)
# Words that ask for infrastructure, unless the sentence is a question about it.
_WEAK_INTENT = re.compile(
    r"\b(?:create|make|build|provision|deploy|launch|run|host|add|configure|define|declare"
    r"|need|want)\b"
    r"|\b(?:set|spin|stand)\s*up\b|\bwould\s+like\b|\bhelp\s+me\b"
    r"|\bhow\s+(?:do|can|would|should)\s+(?:i|we|you)\b"
)
_QUESTION = re.compile(
    r"^\s*(?:what|what's|whats|why|who|when|where|which|explain|describe|compare"
    r"|summari[sz]e|tell\s+me\s+about|is|are|does|did|list)\b"
)


@dataclass(frozen=True)
class _Mention:
    """A resource phrase found in the query."""

    start: int
    resource: str
    cloud: str | None


def _first(patterns: tuple[tuple[str, str], ...], text: str) -> str | None:
    """The key whose pattern matches earliest in the text."""
    best: tuple[int, str] | None = None
    for pattern, key in patterns:
        match = re.search(pattern, text)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), key)
    return best[1] if best else None


def _mentions(text: str) -> tuple[list[_Mention], str]:
    """Resource phrases in order of appearance, and the text with those phrases blanked."""
    found: list[_Mention] = []
    remaining = text
    for pattern, resource, cloud in _SYNONYMS:
        for match in re.finditer(pattern, remaining):
            found.append(_Mention(match.start(), resource, cloud))
        # Blank the words out so "blob container" is not also read as "container".
        remaining = re.sub(pattern, lambda m: " " * len(m.group(0)), remaining)
    return sorted(found, key=lambda mention: mention.start), remaining


def parse_request(query: str) -> ProgramRequest | None:
    """Read a request for code; None when the query is not asking for a program."""
    text = " ".join(query.lower().split())
    mentions, rest = _mentions(text)
    if not mentions:
        return None
    language = _first(_LANGUAGE_WORDS, text)
    # Intent is read with the resource names blanked, so "Cloud Run" is not a verb.
    is_request = (
        _STRONG_INTENT.search(rest) is not None
        or language is not None
        or (_WEAK_INTENT.search(rest) is not None and _QUESTION.search(text) is None)
    )
    if not is_request:
        return None
    kinds = {mention.resource for mention in mentions}
    # A website lives in a bucket and most things live in a network: the thing named
    # alongside is the setting, not the request.
    candidates = [
        mention
        for mention in mentions
        if not (mention.resource == "bucket" and "website" in kinds)
        and not (mention.resource == "network" and len(kinds) > 1)
    ]
    chosen = candidates[0]
    implied = [mention.cloud for mention in mentions if mention.cloud]
    cloud = _first(_CLOUD_WORDS, text) or chosen.cloud or (implied[0] if implied else "aws")
    return ProgramRequest(chosen.resource, cloud, language or "typescript")


# ---------------------------------------------------------------------------------------
# Syntax checks: a real parser where the standard library has one, a tokenizer elsewhere.


@dataclass(frozen=True)
class _Lexeme:
    """One token: identifier, number, string or punctuation, with its bracket depth."""

    kind: str
    text: str
    line: int
    depth: int


@dataclass(frozen=True)
class _Quoted:
    """How one kind of string literal ends, escapes and embeds expressions."""

    quote: str
    is_multiline: bool = False
    has_escapes: bool = True
    is_doubled: bool = False
    hole: str = ""


_OPERATORS = sorted(
    ["===", "!==", "...", "=>", "==", "!=", "<=", ">=", "&&", "||", "??", "?.", ":=", "<-",
     "++", "--", "+=", "-=", "*=", "/=", "::", "<<", ">>"],
    key=len,
    reverse=True,
)  # fmt: skip
_CLOSERS = {")": "(", "]": "[", "}": "{"}
_BAD_PAIRS = frozenset(
    [
        (",", ","), ("(", ","), ("[", ","), ("{", ","), (",", ";"), (";", ","),
        ("=", ";"), ("=", ")"), ("=", "]"), ("=", "}"), ("=", ","),
        (":", ","), (":", ";"), (":", ")"), (".", "."), (".", ";"), (".", ","),
        ("=>", ";"), ("=>", ")"), ("=>", ","),
    ]
)  # fmt: skip


def _scan_quoted(code: str, index: int, line: int, kind: _Quoted) -> tuple[int, int, bool]:
    """Skip a string body; returns the next index, line and whether a hole was opened."""
    start_line = line
    while index < len(code):
        char = code[index]
        if kind.has_escapes and char == "\\":
            line += code[index + 1 : index + 2] == "\n"
            index += 2
            continue
        if code.startswith(kind.quote, index):
            if kind.is_doubled and code.startswith(kind.quote * 2, index):
                index += 2
                continue
            return index + len(kind.quote), line, False
        if kind.hole == "${" and code.startswith("${", index):
            return index + 2, line, True
        if kind.hole == "{" and char in "{}":
            if code.startswith(char * 2, index):
                index += 2
                continue
            if char == "{":
                return index + 1, line, True
        if char == "\n":
            if not kind.is_multiline:
                raise ValueError(f"line {start_line}: unterminated string")
            line += 1
        index += 1
    raise ValueError(f"line {start_line}: unterminated string")


def _string_kind(code: str, index: int, dialect: str) -> tuple[_Quoted, int] | None:
    """The string literal starting at index, and the length of its opening."""
    char = code[index]
    if dialect == "typescript":
        if char == "`":
            return _Quoted("`", is_multiline=True, hole="${"), 1
        if char in "\"'":
            return _Quoted(char), 1
    elif dialect == "go":
        if char == "`":
            return _Quoted("`", is_multiline=True, has_escapes=False), 1
        if char in "\"'":
            return _Quoted(char), 1
    else:
        for prefix in ('$@"', '@$"'):
            if code.startswith(prefix, index):
                verbatim = _Quoted('"', is_multiline=True, has_escapes=False, is_doubled=True)
                return replace(verbatim, hole="{"), 3
        if code.startswith('$"', index):
            return _Quoted('"', hole="{"), 2
        if code.startswith('@"', index):
            return _Quoted('"', is_multiline=True, has_escapes=False, is_doubled=True), 2
        if char in "\"'":
            return _Quoted(char), 1
    return None


def _tokenize(code: str, dialect: str) -> list[_Lexeme]:
    """Tokens of TypeScript, Go or C#; raises ValueError on unbalanced or unclosed code."""
    tokens: list[_Lexeme] = []
    # Open brackets, and strings suspended while an embedded expression is read.
    stack: list[tuple[str, int, _Quoted | None]] = []
    index, line = 0, 1
    identifier = re.compile(r"[A-Za-z_$][\w$]*" if dialect == "typescript" else r"@?[A-Za-z_]\w*")
    number = re.compile(r"\d[\w]*(?:\.\d[\w]*)?")

    def resume(kind: _Quoted, at: int, at_line: int) -> tuple[int, int]:
        end, end_line, is_hole = _scan_quoted(code, at, at_line, kind)
        if is_hole:
            stack.append(("hole", end_line, kind))
        return end, end_line

    while index < len(code):
        char = code[index]
        if char == "\n":
            line += 1
            index += 1
            continue
        if char.isspace():
            index += 1
            continue
        if code.startswith("//", index):
            newline = code.find("\n", index)
            index = len(code) if newline < 0 else newline
            continue
        if code.startswith("/*", index):
            end = code.find("*/", index + 2)
            if end < 0:
                raise ValueError(f"line {line}: unterminated comment")
            line += code.count("\n", index, end)
            index = end + 2
            continue
        string = _string_kind(code, index, dialect)
        if string is not None:
            kind, opening = string
            tokens.append(_Lexeme("string", code[index : index + opening], line, len(stack)))
            start = index
            index, line = resume(kind, index + opening, line)
            tokens[-1] = _Lexeme("string", code[start:index], tokens[-1].line, tokens[-1].depth)
            continue
        match = identifier.match(code, index) or number.match(code, index)
        if match:
            kind_name = "number" if char.isdigit() else "name"
            tokens.append(_Lexeme(kind_name, match.group(0), line, len(stack)))
            index = match.end()
            continue
        if char in "([{":
            tokens.append(_Lexeme("punct", char, line, len(stack)))
            stack.append((char, line, None))
            index += 1
            continue
        if char in ")]}":
            if not stack:
                raise ValueError(f"line {line}: unexpected {char!r}")
            opener, opened_at, suspended = stack.pop()
            if suspended is not None and char == "}":
                index, line = resume(suspended, index + 1, line)
                continue
            if opener != _CLOSERS[char]:
                raise ValueError(f"line {line}: {char!r} closes {opener!r} from line {opened_at}")
            tokens.append(_Lexeme("punct", char, line, len(stack)))
            index += 1
            continue
        operator = next((op for op in _OPERATORS if code.startswith(op, index)), char)
        tokens.append(_Lexeme("punct", operator, line, len(stack)))
        index += len(operator)
    if stack:
        opener, opened_at, _ = stack[-1]
        what = "string interpolation" if opener == "hole" else repr(opener)
        raise ValueError(f"line {opened_at}: {what} is never closed")
    for previous, current in pairwise(tokens):
        pair = (previous.text, current.text)
        if previous.kind == current.kind == "punct" and pair in _BAD_PAIRS:
            raise ValueError(f"line {current.line}: {current.text!r} after {previous.text!r}")
    return tokens


def _ends_cleanly(tokens: Sequence[_Lexeme]) -> None:
    if not tokens or tokens[-1].text not in (";", "}"):
        line = tokens[-1].line if tokens else 1
        raise ValueError(f"line {line}: the file ends in the middle of a statement")


def _check_typescript(code: str) -> None:
    tokens = _tokenize(code, "typescript")
    _ends_cleanly(tokens)
    top = [token for token in tokens if token.depth == 0]
    starters = {"import", "export", "const", "let", "var", "function", "class"}
    for previous, current, following in zip([None, *top], top, [*top[1:], None], strict=False):
        if current.kind != "name" or current.text not in starters:
            continue
        is_separated = previous is None or previous.text in (";", "}", "export", "default")
        if not is_separated:
            raise ValueError(f"line {current.line}: missing ';' before {current.text!r}")
        if current.text in ("const", "let", "var") and (
            following is None or (following.kind != "name" and following.text not in ("{", "["))
        ):
            raise ValueError(f"line {current.line}: {current.text} needs a name")


def _go_package_name(path: str) -> str:
    """The name a Go import binds: the last path element that is not a major version."""
    elements = [e for e in path.split("/") if not re.fullmatch(r"v\d+", e)]
    return elements[-1].replace("-", "_")


def _check_go(code: str) -> None:
    tokens = _tokenize(code, "go")
    if [t.text for t in tokens[:2]] != ["package", "main"]:
        raise ValueError("line 1: a Pulumi Go program must start with `package main`")
    imports: dict[str, int] = {}
    index = 2
    while index < len(tokens) and tokens[index].text == "import":
        index += 1
        is_block = index < len(tokens) and tokens[index].text == "("
        index += is_block
        while index < len(tokens) and tokens[index].text not in (")", "import", "func"):
            alias = None
            if tokens[index].kind == "name" or tokens[index].text in ("_", "."):
                alias = tokens[index].text
                index += 1
            if index >= len(tokens) or tokens[index].kind != "string":
                raise ValueError(f"line {tokens[index - 1].line}: malformed import")
            name = alias or _go_package_name(tokens[index].text.strip('"`'))
            if name not in ("_", "."):
                imports[name] = tokens[index].line
            index += 1
            if not is_block:
                break
        index += is_block
    rest = tokens[index:]
    texts = [t.text for t in rest]
    if not any(texts[i : i + 4] == ["func", "main", "(", ")"] for i in range(len(texts))):
        raise ValueError("a Pulumi Go program needs `func main()`")
    used = {
        current.text
        for current, following in pairwise(rest)
        if current.kind == "name" and following.text == "."
    }
    for name, line in imports.items():
        if name not in used:
            raise ValueError(f"line {line}: package {name} is imported but not used")
    _ends_cleanly(tokens)


def _check_csharp(code: str) -> None:
    tokens = _tokenize(code, "csharp")
    texts = [t.text for t in tokens]
    if not any(texts[i : i + 3] == ["using", "Pulumi", ";"] for i in range(len(texts))):
        raise ValueError("a Pulumi C# program needs `using Pulumi;`")
    runs = [
        i
        for i in range(len(texts))
        if texts[i : i + 3] == ["Deployment", ".", "RunAsync"]
        and texts[i + 3 : i + 4] in (["("], ["<"])
    ]
    if not runs:
        raise ValueError("a Pulumi C# program needs `Deployment.RunAsync(...)`")
    index = 0
    while index < len(tokens) and tokens[index].text == "using":
        end = next((i for i in range(index, len(tokens)) if tokens[i].text == ";"), None)
        if end is None or any(t.depth for t in tokens[index : end + 1]):
            raise ValueError(f"line {tokens[index].line}: malformed using directive")
        index = end + 1
    is_top_level = texts[runs[0] - 2 : runs[0]] == ["return", "await"]
    if is_top_level and tokens[runs[0]].depth == 0 and texts[-2:] != [")", ";"]:
        raise ValueError(f"line {tokens[-1].line}: `RunAsync(...)` must end with `);`")
    _ends_cleanly(tokens)


def _yaml_roots(node: Any) -> Iterator[str]:
    """Names that ${...} interpolations in a Pulumi YAML document start from."""
    if isinstance(node, str):
        for match in re.finditer(r"(?<!\$)\$\{([^}]*)\}", node):
            root = re.match(r"[\w-]+", match.group(1))
            if root:
                yield root.group(0)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _yaml_roots(value)
    elif isinstance(node, list):
        for value in node:
            yield from _yaml_roots(value)


def _check_yaml(code: str) -> None:
    # Imported here because only the syntax check needs PyYAML; rendering does not.
    import yaml

    try:
        document = yaml.safe_load(code)
    except yaml.YAMLError as error:
        raise ValueError(f"invalid YAML: {error}") from error
    if not isinstance(document, dict):
        raise ValueError("a Pulumi YAML program is a mapping")
    if not isinstance(document.get("name"), str) or not document["name"]:
        raise ValueError("a Pulumi YAML program needs a `name`")
    runtime = document.get("runtime")
    if runtime != "yaml" and not (isinstance(runtime, dict) and runtime.get("name") == "yaml"):
        raise ValueError("a Pulumi YAML program needs `runtime: yaml`")
    sections = {}
    for section in ("config", "variables", "resources", "outputs"):
        value = document.get(section, {})
        if not isinstance(value, dict):
            raise ValueError(f"`{section}` must be a mapping")
        sections[section] = value
    if not sections["resources"]:
        raise ValueError("a Pulumi YAML program needs at least one resource")
    for name, resource in sections["resources"].items():
        if not isinstance(resource, dict) or not isinstance(resource.get("type"), str):
            raise ValueError(f"resource {name!r} needs a `type`")
        if not re.fullmatch(r"[\w-]+:[\w/.-]*:\w+", resource["type"]):
            raise ValueError(f"resource {name!r} has a malformed type {resource['type']!r}")
        for key in ("properties", "options"):
            if not isinstance(resource.get(key, {}), dict):
                raise ValueError(f"resource {name!r}: `{key}` must be a mapping")
    known = {"pulumi"} | {
        str(key) for section in ("config", "variables", "resources") for key in sections[section]
    }
    for section in ("variables", "resources", "outputs"):
        for root in _yaml_roots(sections[section]):
            if root not in known:
                raise ValueError(f"`${{{root}}}` refers to nothing declared in the program")


def _check_python(code: str) -> None:
    try:
        tree = ast.parse(code, filename="__main__.py")
        # Compiling catches what the parser allows but Python rejects (a stray return).
        compile(tree, "__main__.py", "exec", dont_inherit=True)
    except SyntaxError as error:
        raise ValueError(f"line {error.lineno}: {error.msg}") from error


_CHECKS = {
    "typescript": _check_typescript,
    "python": _check_python,
    "go": _check_go,
    "csharp": _check_csharp,
    "yaml": _check_yaml,
}


def check_syntax(program: GeneratedProgram) -> None:
    """Raise ValueError when the program's code does not parse as its language."""
    check = _CHECKS.get(program.language)
    if check is None:
        raise ValueError(f"unsupported language {program.language!r}")
    try:
        check(program.code)
    except ValueError as error:
        raise ValueError(f"{_LANGUAGE_NAMES[program.language]}: {error}") from error
