"""The papers' claims, checked on saved results (``vitscope report --family``, ``vitscope.findings``).

In three rooms: :mod:`~.folders` (results folders read into an ``Evidence``, models matched to
families), :mod:`~.claims` (the claims, :data:`~.claims.CLAIMS`, each a small pure test returning
a ``Verdict``) and :mod:`~.table` (text and Markdown). Their public names are re-exported here.
"""

from vitscope.reporting.findings.claims import (
    CLAIMS,
    FAILS,
    HOLDS,
    NO_DATA,
    NOT_MEANINGFUL,
    Claim,
    Verdict,
    check_claims,
    first_quarter,
    last_quarter,
    later_half,
    mean_log,
    undecided_by,
)
from vitscope.reporting.findings.folders import (
    FAMILIES,
    Evidence,
    Model,
    evidence,
    family_of,
    gather,
    matching_key,
    parse_families,
)
from vitscope.reporting.findings.table import MARK, findings_markdown, findings_text

__all__ = [
    "CLAIMS", "FAILS", "FAMILIES", "HOLDS", "MARK", "NOT_MEANINGFUL", "NO_DATA", "Claim", "Evidence", "Model",
    "Verdict", "check_claims", "evidence", "family_of", "findings_markdown", "findings_text", "first_quarter",
    "gather", "last_quarter", "later_half", "matching_key", "mean_log", "parse_families", "undecided_by",
]
