"""Understanding which program a question asks for."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.copilot.programs.spec import (
    KUBERNETES,
    PROGRAMS,
    ProgramRequest,
)

# Ordered so longer, more specific phrases claim their words before generic ones do.
_SYNONYMS: tuple[tuple[str, str, str | None], ...] = (
    (
        r"static\s+web\s*sites?|static\s+sites?|web\s*sites?|landing\s+pages?|\bsites?\b",
        "website",
        None,
    ),
    (r"\bcloud\s*front\b", "website", "aws"),
    (r"\bcdns?\b|content\s+delivery\s+networks?", "website", None),
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
    r"\b(?:create|make|build|provision|deploy|install|launch|run|host|add|configure|define|declare"
    r"|need|want)\b"
    r"|\b(?:set|spin|stand)\s*up\b|\bwould\s+like\b|\bhelp\s+me\b"
)
_QUESTION = re.compile(
    r"^\s*(?:what|what's|whats|why|who|when|where|which|explain|describe|compare"
    r"|summari[sz]e|tell\s+me\s+about|is|are|does|did|list)\b"
)


_KUBERNETES = re.compile(r"\bkubernetes\b|\bk8s\b|\bkube\b|\bkubectl\b|\bhelm\b")
# Kubernetes objects, read only when the question is about Kubernetes; the first pattern
# that matches wins, so "nginx with a Helm chart" is a Helm release.
_KUBERNETES_OBJECTS: tuple[tuple[str, str], ...] = (
    (r"\bhelm\b|\bcharts?\b", "helm"),
    (r"\bconfig\s*maps?\b|\bsecrets?\b", "config"),
    (r"\bnamespaces?\b", "namespace"),
    (r"\bdeployments?\b|\bnginx\b|\bservices?\b|\bpods?\b|\bapps?\b|\bworkloads?\b", "app"),
)
# Charts of the Bitnami repository the Helm release template installs from; a chart named in
# the question replaces the template's nginx only when it is one of these.
_HELM_CHARTS_TEXT = """
    airflow apache argo-cd cassandra cert-manager clickhouse consul drupal elasticsearch etcd
    external-dns fluentd ghost gitea grafana haproxy harbor influxdb jenkins kafka keycloak
    kibana kube-prometheus logstash mariadb memcached metrics-server minio mongodb moodle mysql
    nats nginx nginx-ingress-controller odoo opensearch postgresql rabbitmq redis redis-cluster
    sealed-secrets solr spark thanos tomcat valkey wordpress zookeeper
"""
HELM_CHARTS = frozenset(_HELM_CHARTS_TEXT.split())
_CHART_ALIASES = {"postgres": "postgresql", "mongo": "mongodb", "argocd": "argo-cd"}
_CHART_WORD = re.compile(r"[a-z0-9][a-z0-9-]*")
# The chart the template itself installs: naming it changes nothing.
TEMPLATE_CHART = "nginx"
# Questions about the organization's data that merely name Kubernetes resource types.
_DATA_WORDS = re.compile(r"\b(?:stacks?|resources?|types?|updates?|across)\b")


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


def _kubernetes_request(text: str) -> ProgramRequest | None:
    """A Kubernetes program, when the question names Kubernetes and one of its objects.

    A short phrase ("Kubernetes nginx deployment") is a request on its own.
    """
    if _KUBERNETES.search(text) is None or _DATA_WORDS.search(text) is not None:
        return None
    resource = next((key for pattern, key in _KUBERNETES_OBJECTS if re.search(pattern, text)), None)
    if resource is None:
        return None
    language = _first(_LANGUAGE_WORDS, text)
    is_request = (
        _STRONG_INTENT.search(text) is not None
        or language is not None
        or (_QUESTION.search(text) is None and _WEAK_INTENT.search(text) is not None)
        or (_QUESTION.search(text) is None and len(text.split()) <= 5)
    )
    if not is_request:
        return None
    chart = helm_chart(text) if resource == "helm" else ""
    return ProgramRequest(resource, KUBERNETES, language or "typescript", chart)


def helm_chart(text: str) -> str:
    """The known chart a Helm question names ("a Helm release for redis"), or "".

    "" also for the template's own chart, so the request equals the default one.
    """
    for word in _CHART_WORD.findall(text.lower()):
        chart = _CHART_ALIASES.get(word, word)
        if chart in HELM_CHARTS:
            return "" if chart == TEMPLATE_CHART else chart
    return ""


def parse_request(query: str) -> ProgramRequest | None:
    """Read a request for code; None when the query is not asking for a program."""
    text = " ".join(query.lower().split())
    if _KUBERNETES.search(text) is not None:
        return _kubernetes_request(text)
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


def follow_up_request(
    query: str, resource: str, cloud: str, language: str, chart: str = ""
) -> ProgramRequest | None:
    """The previous program again in another language or cloud ("show me the code in Go").

    None unless the question names a language or a cloud and nothing else it could mean.
    """
    text = " ".join(query.lower().split())
    if _mentions(text)[0]:
        return None
    new_language = _first(_LANGUAGE_WORDS, text)
    new_cloud = _first(_CLOUD_WORDS, text)
    if new_language is None and new_cloud is None:
        return None
    if len(text.split()) > 12:
        return None
    changed = ProgramRequest(resource, new_cloud or cloud, new_language or language, chart)
    # Kubernetes programs have no cloud to move to, and the clouds' programs no cluster.
    return changed if (changed.resource, changed.cloud) in PROGRAMS else None
