"""What a question asks for: a deterministic reading of its wording, tried in a fixed order.

Pure. The order matters: specific asks (compare two versions, what changed, who changed)
come before broad ones (updates, stacks), and data asks come before concept questions.
"""

from __future__ import annotations

import re

PROGRAM = "program"
COMPARE = "compare"
ANALYSE = "analyse"
DEPLOYMENT_ANALYSIS = "deployment-analysis"
WHAT_CHANGED = "what-changed"
HISTORY = "history"
DEPLOYMENTS = "deployments"
RESOURCE_TYPE = "resource-type"
RESOURCES = "resources"
UPDATES = "updates"
STACKS = "stacks"
MEMBERS = "members"
CONCEPT = "concept"

# Intents that read one stack's data and so make sense again for another stack.
STACK_INTENTS = frozenset(
    {COMPARE, ANALYSE, DEPLOYMENT_ANALYSIS, WHAT_CHANGED, HISTORY, DEPLOYMENTS, RESOURCES, UPDATES}
)

_COMPARE = re.compile(
    r"\bcompare\b|\bdiff\b|\bdiff(erence)?s?\s+between\s+(versions?|updates?|v?\d)|\bversions?\s+\d+\s+"
    r"(?:and|vs\.?|versus|to)\s+\d+",
    re.I,
)
_FAILURE = re.compile(
    r"\bfail(ed|ure|ing|s)?\b|\bwent wrong\b|\bbroke(n)?\b|\berrors?\b|\bwhy did\b"
    r"|\banaly[sz]e\b|\bwhat happened\b|\bdiagnos|^\s*(why|how come)\s*[?!.]*\s*$",
    re.I,
)
_CHANGE_VERBS = r"(changed|created|updated|deleted|replaced|removed|added|destroyed|modified)"
_WHAT_CHANGED = re.compile(
    r"\bwhat (changed|did (the )?(last |latest |previous )?(update|version|run)\b.{0,40}"
    r"\b(change|do))\b|\bwhat was changed\b|\bchanges? (in|of|made by)\b"
    rf"|\b(which|what) resources? ((got|were|was|have been|has been|did) )?{_CHANGE_VERBS}\b"
    rf"|\bwhat (was|got|were) {_CHANGE_VERBS}\b",
    re.I,
)
# "changed in web/prod": about data only when the question names a stack or project.
_CHANGED_IN = re.compile(r"\bchanged (in|on|for)\b", re.I)
_HISTORY = re.compile(
    r"\bwho\b.{0,30}\b(changed?|updated?|deploy(ed)?|ran|run|modified|touched|destroy(ed)?)\b"
    r"|\bwhen was\b.{0,40}\b(changed|updated|deployed|modified)\b|\bactivity\b|\baudit\b"
    r"|\bwhen did \w+ (last )?(deploy|update|change|run|touch)\b|\bhistory of\b"
    r"|\bwhat (did|has|have) \w+ (do|done|change|changed|deploy|deployed)\b",
    re.I,
)
# "the deploy" as a noun is a deployment run; "deploy" as a verb is not.
_DEPLOYMENTS = re.compile(
    r"\bdeployments?\b|\bdeploy runs?\b|\b(the|a|my|last|latest|recent|this|that) deploys?\b",
    re.I,
)
_RESOURCE_TYPE = re.compile(
    r"\b(of|with) (the )?type\b|\btype\s+[`'\"]?[\w-]+:[\w/-]+"
    r"|\bacross (all )?(my |our |the )?stacks\b"
    r"|\bwhich stacks (have|use|contain|run|own|manage)\b|\bwhere (are|is) (my|our|the|all)\b"
    r"|\bwhere (do|does|did) (we|i|you|they)\b.{0,20}\b(have|run|use|keep|create)\b"
    r"|\b(do|does) (we|i) (have|run|use) any\b|^\s*(any|are there any)\s+[\w:/-]+",
    re.I,
)
_RESOURCES = re.compile(
    r"\bhow many resources\b|\bresource counts?\b|\bnumber of resources\b"
    r"|\b(list|show|what|which)\b(\s+\w+){0,3}\s+resources\b|\bresources (does|do|in|of)\b"
    r"|\bwhat('s| is)? (in|inside)\b|\bwhat (does|do) [\w/.-]+ (contain|manage|run)\b",
    re.I,
)
_UPDATES = re.compile(
    r"\b(last|latest|recent|previous|newest|current)\b(\s+\w+){0,3}\s+"
    r"(updates?|runs?|changes|versions?)\b"
    r"|\bupdate history\b|\bupdates (of|in|for|to)\b|\b(list|show)\b(\s+\w+){0,3}\s+updates\b"
    r"|\bstatus of\b|\bhow many (updates|versions|times)\b",
    re.I,
)
_STACKS = re.compile(
    r"\b(list|show|which|what|how many)\b(\s+\w+){0,3}\s+stacks\b|\bstacks (in|of|for|does|do)\b"
    r"|\bmy stacks\b|^\s*(all |our )?stacks\s*[?.!]*\s*$"
    r"|\b(list|show|which|what)\b(\s+\w+){0,2}\s+(every|each|all)( the)? stacks?\b",
    re.I,
)
_MEMBERS = re.compile(
    r"\b(users?|members?|people|teammates|viewers?|admins?|administrators?)\b"
    r"|\bwho\b.*\b(org|organi[sz]ation|team)\b|\bwhat role\b|\broles? (of|does|do)\b"
    r"|\b\w+'s role\b",
    re.I,
)
# "How do I …", "what is …": a concept question unless the data intents above claim it.
_CONCEPT = re.compile(
    r"^\s*(what\s+(is|are|does)|what's|how\s+(do|can|should|would)|why\s+(do|does|is|are|should)"
    r"|explain|difference|when\s+should|can\s+i|should\s+i|is\s+it)\b",
    re.I,
)
# A Kubernetes Deployment is a workload, not a Pulumi deployment run.
_KUBERNETES = re.compile(r"\bkubernetes\b|\bk8s\b|\bhelm\b|\bpods?\b|\bnginx\b", re.I)
_HOW_TO = re.compile(r"^\s*how (do|can|should|would) (i|we|you)\b", re.I)
_FOLLOW_UP = re.compile(
    r"^\s*(and|what about|how about|same|now|also|only|just|which of|who of|of those|then)\b"
    r"|\b(them|those|these|that one|it|there|same)\b",
    re.I,
)
MAX_FOLLOW_UP_WORDS = 10

# Words the intents above are read from, for correcting their misspellings.
_VOCABULARY_TEXT = """
    resource resources stack stacks update updates updated deployment deployments deployed
    member members project projects version versions organization organisation organizations
    changed change changes history compare difference viewer viewers admin admins administrator
    latest previous recent deleted created replaced failed failure people users activity
"""
VOCABULARY = frozenset(_VOCABULARY_TEXT.split())
# Contractions typed without their apostrophe.
_CONTRACTIONS = {
    "whats": "what's",
    "hows": "how's",
    "wheres": "where's",
    "whos": "who's",
    "dont": "don't",
    "doesnt": "doesn't",
    "didnt": "didn't",
    "cant": "can't",
    "isnt": "isn't",
    "wasnt": "wasn't",
    # Short misspellings too short for the edit-distance rule.
    "wat": "what",
    "wht": "what",
    "waht": "what",
    "whcih": "which",
    "wich": "which",
}
# A plain word: not part of a path (`web/prod`), a type token (`aws:s3`) or a flag.
_PLAIN_WORD = re.compile(r"(?<![\w/:.@-])[A-Za-z]+(?![\w/:@-])(?!\.\w)")
MIN_CORRECTED_LENGTH = 5


def normalize(question: str, known: frozenset[str] = frozenset()) -> str:
    """The question with typed-out contractions and misspelled intent words corrected.

    A word is corrected only when it is not a `known` word (the notes' vocabulary, the
    organization's own names) and is one edit away from exactly one vocabulary word, or
    two edits for long words: "resouces" reads as "resources", "protect" stays itself.
    """

    def fix(match: re.Match[str]) -> str:
        word = match[0]
        lowered = word.lower()
        if lowered in _CONTRACTIONS:
            return _CONTRACTIONS[lowered]
        if len(lowered) < MIN_CORRECTED_LENGTH or lowered in VOCABULARY or lowered in known:
            return word
        limit = 2 if len(lowered) >= 9 else 1
        # The closest word, and among equally close ones the one of the same length.
        scored = sorted(
            (distance, abs(len(candidate) - len(lowered)), candidate)
            for candidate in VOCABULARY
            if abs(len(candidate) - len(lowered)) <= limit
            and (distance := edit_distance(lowered, candidate)) <= limit
        )
        return scored[0][2] if scored else word

    return _PLAIN_WORD.sub(fix, question)


def edit_distance(first: str, second: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) turning one word into the other."""
    rows = [list(range(len(second) + 1))]
    for i, a in enumerate(first, 1):
        row = [i] + [0] * len(second)
        for j, b in enumerate(second, 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (a != b))
            if i > 1 and j > 1 and a == second[j - 2] and first[i - 2] == b:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def classify(question: str, *, names_data: bool) -> str:
    """The intent the wording asks for; "" when it names none.

    `names_data` says the question names a visible stack or project (or an update through
    its context), which turns "what failed" into an analysis rather than a concept question.
    """
    if _HOW_TO.search(question) and not names_data:
        return CONCEPT
    if _COMPARE.search(question) and names_data:
        return COMPARE
    if _FAILURE.search(question) and (names_data or not _CONCEPT.search(question)):
        if _DEPLOYMENTS.search(question) and not _KUBERNETES.search(question):
            return DEPLOYMENT_ANALYSIS
        return ANALYSE
    if (
        _WHAT_CHANGED.search(question) or (names_data and _CHANGED_IN.search(question))
    ) and not _CONCEPT_ONLY.search(question):
        return WHAT_CHANGED
    if _HISTORY.search(question):
        return HISTORY
    if _RESOURCE_TYPE.search(question):
        return RESOURCE_TYPE
    if _DEPLOYMENTS.search(question) and (
        names_data or not (_CONCEPT.search(question) or _KUBERNETES.search(question))
    ):
        return DEPLOYMENTS
    if _RESOURCES.search(question):
        return RESOURCES
    if _UPDATES.search(question):
        return UPDATES
    if _STACKS.search(question):
        return STACKS
    if _MEMBERS.search(question) and not _CONCEPT_ONLY.search(question):
        return MEMBERS
    if _CONCEPT.search(question):
        return CONCEPT
    return ""


# "What changed in Pulumi 3?" or "what is a member role" are about concepts, not data.
_CONCEPT_ONLY = re.compile(r"^\s*(what\s+is\s+an?|what\s+are)\b(?!.*\b(my|our|the)\b)", re.I)


# "Which stacks failed?", "failed updates": a question about several failures at once.
_SEVERAL = re.compile(
    r"\b(which|what|list|show|any|all)\b(\s+\w+){0,2}\s+(stacks|updates|failures)\b"
    r"|\bfailed (stacks|updates)\b|\bfailures\b",
    re.I,
)


def asks_for_several(question: str) -> bool:
    """The question asks about every failing stack, not one update."""
    return _SEVERAL.search(question) is not None


_REFERS_BACK = re.compile(r"\b(they|them|those|these|their|there)\b", re.I)


def refers_back(question: str) -> bool:
    """The question points at what the previous turn was about ("do they", "of those")."""
    return _REFERS_BACK.search(question) is not None


def is_follow_up(question: str, *, names_data: bool) -> bool:
    """A short question leaning on the previous turn ("and in staging?", "which of them …")."""
    if len(question.split()) > MAX_FOLLOW_UP_WORDS:
        return False
    return names_data or _FOLLOW_UP.search(question) is not None
