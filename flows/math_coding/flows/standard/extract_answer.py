"""Pull the numeric answer out of the model's reply (the variants differ in which number they trust)."""

import re

from promptflow.core import tool

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@tool
def extract_answer(text: str, pick: str = "last") -> str:
    numbers = NUMBER.findall(text or "")
    if not numbers:
        return ""
    value = numbers[-1] if pick == "last" else numbers[0]
    return value[:-2] if value.endswith(".0") else value
