"""Log Analytics at the SDK boundary, for tests: the KQL the app sends to AmlOnlineEndpointTrafficLog, run over rows
held in memory and answered with azure-monitor-query's own result types (LogsTable from the columns and types the
service reports, so a `datetime` column comes back as datetime objects, as the SDK converts it).

Only the KQL the app writes is understood — `where` (and / or, parentheses, ==, !=, <, <=, >, >=, `in (...)`,
`startswith`, `between (datetime(..) .. datetime(..))`, isnotempty()), `project`, `order by` and `summarize` with
count(), countif() and percentile() `by` one column — and anything else fails loudly (NotImplementedError): a fake
that guessed would let a wrong query pass. The query's timespan applies as the service applies it, on TimeGenerated.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

TRAFFIC_TABLE = "AmlOnlineEndpointTrafficLog"
# The columns the app reads, typed as the table's reference gives them
# (https://learn.microsoft.com/azure/azure-monitor/reference/tables/amlonlineendpointtrafficlog).
TRAFFIC_COLUMNS = {
    "TimeGenerated": "datetime", "EndpointName": "string", "DeploymentName": "string", "Method": "string",
    "Path": "string", "ResponseCode": "int", "ResponseCodeReason": "string", "ModelStatusCode": "int",
    "TotalDurationMs": "int", "XRequestId": "string", "XMSClientRequestId": "string",
}
AGGREGATE_TYPE = "long"  # count() and countif() are long; the percentiles are typed alike (as the unit tests do)

SEEDED_ROWS = "log-analytics-traffic.jsonl"  # in a fake's state folder: rows a test adds from another process

Row = dict[str, Any]
Predicate = Callable[[Row], bool]


def seed_rows(state_dir: Path, rows: Iterable[Row]) -> None:
    """Add `rows` to the table a fake Log Analytics in another process answers from (`seeded_rows`)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / SEEDED_ROWS).open("a", encoding="utf-8") as seeded:
        seeded.writelines(json.dumps(_typed(row), default=str) + "\n" for row in rows)  # a bad column fails here


def seeded_rows(state_dir: Path) -> list[Row]:
    path = state_dir / SEEDED_ROWS
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def run_query(query: str, rows: Iterable[Row], timespan: Any = None) -> Any:
    """The LogsQueryResult Log Analytics would answer `query` with, over the table's `rows`."""
    from azure.monitor.query import LogsQueryResult, LogsTable

    source, *operators = [part.strip() for part in _split(query, "|")]
    if source != TRAFFIC_TABLE:
        raise NotImplementedError(f"the fake Log Analytics holds {TRAFFIC_TABLE} only, not {source!r}")
    table = [_typed(row) for row in rows]
    if timespan is not None:
        if not (isinstance(timespan, tuple) and all(isinstance(moment, datetime) for moment in timespan)):
            raise NotImplementedError(f"the fake Log Analytics takes a (start, end) timespan, not {timespan!r}")
        start, end = timespan
        table = [row for row in table if start <= row["TimeGenerated"] <= end]
    columns = dict(TRAFFIC_COLUMNS)
    for operator in operators:
        name, _, argument = operator.partition(" ")
        if name == "where":
            keep = _predicate(argument)
            table = [row for row in table if keep(row)]
        elif name == "project":
            selected = [column.strip() for column in _split(argument, ",")]
            columns = {column: columns[_known(column, columns)] for column in selected}
            table = [{column: row.get(column) for column in selected} for row in table]
        elif name == "order" and (found := re.fullmatch(r"by (\w+)(?: (asc|desc))?", argument.strip())):
            column, descending = _known(found.group(1), columns), found.group(2) != "asc"  # KQL: desc by default
            table.sort(key=lambda row: (row[column] is not None, row[column] or 0), reverse=descending)
        elif name == "summarize":
            columns, table = _summarize(argument, columns, table)
        else:
            raise NotImplementedError(f"the fake Log Analytics does not run `{operator}`")
    wire = [[_wire(row[column]) for column in columns] for row in table]
    return LogsQueryResult(tables=[LogsTable(name="PrimaryResult", columns=list(columns),
                                             columns_types=list(columns.values()), rows=wire)])


def _typed(row: Row) -> Row:
    unknown = set(row) - set(TRAFFIC_COLUMNS)
    if unknown:
        raise ValueError(f"{TRAFFIC_TABLE} has no column(s) {', '.join(sorted(unknown))}")
    typed = {column: row.get(column) for column in TRAFFIC_COLUMNS}
    if isinstance(typed["TimeGenerated"], str):
        typed["TimeGenerated"] = _datetime(typed["TimeGenerated"])
    return typed


def _wire(value: Any) -> Any:
    """As the REST answer carries it: datetimes as ISO 8601 text (the SDK turns them back into datetime)."""
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def _datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))


def _known(column: str, columns: dict[str, str]) -> str:
    if column not in columns:
        raise ValueError(f"'{column}': failed to resolve column (the table has {', '.join(columns)})")
    return column


def _split(text: str, separator: str) -> list[str]:
    """`text` split at `separator` (a character, or a word between spaces) outside quotes and parentheses."""
    parts, depth, quoted, start, index = [], 0, False, 0, 0
    word = len(separator) > 1
    while index < len(text):
        char = text[index]
        if quoted:
            index += 2 if char == "\\" else 1
            quoted = char != '"'
            continue
        if char == '"':
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0 and (text.startswith(f" {separator} ", index) if word else char == separator):
            parts.append(text[start:index])
            index += len(separator) + 2 if word else 1
            start = index
            continue
        index += 1
    return [*parts, text[start:]]


def _predicate(text: str) -> Predicate:
    text = text.strip()
    alternatives = _split(text, "or")
    if len(alternatives) > 1:
        anyof = [_predicate(part) for part in alternatives]
        return lambda row: any(check(row) for check in anyof)
    conjuncts = _split(text, "and")
    if len(conjuncts) > 1:
        allof = [_predicate(part) for part in conjuncts]
        return lambda row: all(check(row) for check in allof)
    if _parenthesized(text):
        return _predicate(text[1:-1])
    return _term(text)


def _parenthesized(text: str) -> bool:
    """`( ... )` as a whole: the first parenthesis closes at the very end (quotes aside)."""
    if not text.startswith("("):
        return False
    depth, quoted = 0, False
    for index, char in enumerate(text):
        if char == '"' and (index == 0 or text[index - 1] != "\\"):
            quoted = not quoted
        elif not quoted:
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                return index == len(text) - 1
    return False


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">=": lambda a, b: a is not None and a >= b,
    "<=": lambda a, b: a is not None and a <= b, ">": lambda a, b: a is not None and a > b,
    "<": lambda a, b: a is not None and a < b,
}


def _term(text: str) -> Predicate:
    if found := re.fullmatch(r"isnotempty\((\w+)\)", text):
        column = _known(found.group(1), TRAFFIC_COLUMNS)
        return lambda row: row[column] not in (None, "")
    if found := re.fullmatch(r"(\w+) between \(datetime\(([^)]+)\) \.\. datetime\(([^)]+)\)\)", text):
        column, low, high = (_known(found.group(1), TRAFFIC_COLUMNS), _datetime(found.group(2)),
                             _datetime(found.group(3)))
        return lambda row: row[column] is not None and low <= row[column] <= high
    if found := re.fullmatch(r"(\w+) in \(([-\d, ]+)\)", text):
        column, values = _known(found.group(1), TRAFFIC_COLUMNS), {int(v) for v in found.group(2).split(",")}
        return lambda row: row[column] in values
    if found := re.fullmatch(r'(\w+) startswith ("(?:[^"\\]|\\.)*")', text):
        column, prefix = _known(found.group(1), TRAFFIC_COLUMNS), json.loads(found.group(2))
        return lambda row: str(row[column] or "").lower().startswith(prefix.lower())  # KQL: case-insensitive
    if found := re.fullmatch(r'(\w+) (==|!=|>=|<=|>|<) ("(?:[^"\\]|\\.)*"|-?\d+)', text):
        column, compare, value = _known(found.group(1), TRAFFIC_COLUMNS), _COMPARISONS[found.group(2)], found.group(3)
        literal = json.loads(value)
        return lambda row: compare(row[column], literal)
    raise NotImplementedError(f"the fake Log Analytics does not evaluate `{text}`")


def _summarize(argument: str, columns: dict[str, str], table: list[Row]) -> tuple[dict[str, str], list[Row]]:
    found = re.fullmatch(r"(.+) by (\w+)", argument.strip(), re.S)
    if found is None:
        raise NotImplementedError(f"the fake Log Analytics summarizes `by` one column only: {argument}")
    key = _known(found.group(2), columns)
    aggregates = [_aggregate(part.strip(), columns) for part in _split(found.group(1), ",")]
    groups: dict[Any, list[Row]] = {}
    for row in table:
        groups.setdefault(row[key], []).append(row)
    result = [{key: value, **{name: aggregate(rows) for name, aggregate in aggregates}}
              for value, rows in groups.items()]
    return {key: columns[key], **dict.fromkeys((name for name, _ in aggregates), AGGREGATE_TYPE)}, result


def _aggregate(text: str, columns: dict[str, str]) -> tuple[str, Callable[[list[Row]], Any]]:
    found = re.fullmatch(r"(\w+) = (\w+)\((.*)\)", text, re.S)
    if found is None:
        raise NotImplementedError(f"the fake Log Analytics needs `Name = aggregate(...)`: {text}")
    name, function, arguments = found.groups()
    if function == "count" and not arguments:
        return name, len
    if function == "countif":
        check = _predicate(arguments)
        return name, lambda rows: sum(1 for row in rows if check(row))
    if function == "percentile" and (parts := re.fullmatch(r"(\w+), (\d+(?:\.\d+)?)", arguments)):
        column, rank = _known(parts.group(1), columns), float(parts.group(2))
        return name, lambda rows: _nearest_rank([row[column] for row in rows if row[column] is not None], rank)
    raise NotImplementedError(f"the fake Log Analytics does not aggregate `{text}`")


def _nearest_rank(values: list[Any], percentile: float) -> Any:
    """percentile()'s nearest-rank value (exact on the small samples tests hold)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percentile / 100 * len(ordered))) - 1]


def client_answering(answer: Any) -> Any:
    """A LogsQueryClient (autospec'd: the real signatures) whose query_workspace returns `answer`, or raises it."""
    from unittest.mock import create_autospec

    from azure.monitor.query import LogsQueryClient

    client = create_autospec(LogsQueryClient, instance=True)
    if isinstance(answer, Exception):
        client.query_workspace.side_effect = answer
    else:
        client.query_workspace.return_value = answer
    return client
