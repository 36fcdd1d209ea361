"""1 when the prediction equals the ground truth as a number (so "42" and "42.0" agree), else 0."""

from promptflow.core import tool


def _as_number(text: str) -> float | None:
    try:
        return float(str(text).strip())
    except ValueError:
        return None


@tool
def grade(groundtruth: str, prediction: str) -> int:
    expected, actual = _as_number(groundtruth), _as_number(prediction)
    if expected is None or actual is None:
        return int(str(groundtruth).strip() == str(prediction).strip())
    return int(abs(expected - actual) < 1e-9)
