import re

from promptflow.core import tool


@tool
def parse_score(verdict: str) -> int:
    """The grader's first digit from 1 to 5; a reply without one fails the line (shown as an error, not a score)."""
    found = re.search(r"[1-5]", verdict)
    if found is None:
        raise ValueError(f"the grader gave no score from 1 to 5: {verdict[:80]!r}")
    return int(found.group())
