"""Find the metric names a PromQL expression (or a Grafana query) reads, without a PromQL parser.

Strings, label matchers ``{...}``, ranges ``[...]``, label lists after ``by``/``without``/
``on``/``ignoring``/``group_left``/``group_right`` and Grafana variables are removed; what remains
that looks like an identifier and is not a function call, a keyword or a number is a metric name.
``{__name__="x"}`` selectors are read too. The syntax itself is checked elsewhere by real
Prometheus (promtool for rules, a live server for dashboard queries).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from prometheus_client import CollectorRegistry

from gateway.observability.metrics import METRIC_NAMES, GatewayMetrics
from gateway.supervisor import SUPERVISOR_METRIC_NAMES
from sgw_operator.metrics import METRIC_NAMES as OPERATOR_METRIC_NAMES

OPERATOR_METRICS: Final = frozenset(OPERATOR_METRIC_NAMES)
HISTOGRAM_SUFFIXES: Final = ("_bucket", "_sum", "_count")
HISTOGRAMS: Final = frozenset(
    m.name for m in GatewayMetrics(CollectorRegistry()).registry.collect() if m.type == "histogram"
)
"""Gateway histogram families: only these may be queried with a ``_bucket/_sum/_count`` suffix."""
ALLOWED_OTHER: Final = frozenset({"up"})

_KEYWORDS: Final = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
     "inf", "nan", "atan2", "start", "end"}
)  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"([^"]+)"')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_GRAFANA_VAR = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_:]*\}?")
_IDENT = re.compile(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(?!\w)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*?)(?:,\s*[A-Za-z_][A-Za-z0-9_]*)?\)\s*$")


def metric_names(expr: str) -> set[str]:
    """Metric names read by a PromQL expression or a Grafana ``label_values(...)`` query."""
    label_values = _LABEL_VALUES.match(expr)
    if label_values:
        expr = label_values.group(1)
    names = set(_NAME_MATCHER.findall(expr))
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VAR.sub("", text)
    # Matchers may hold `{{...}}`-free text only once strings are gone; repeat for nesting safety.
    previous = None
    while previous != text:
        previous = text
        text = _BRACES.sub(" ", text)
        text = _BRACKETS.sub(" ", text)
        text = _LABEL_LIST.sub(" ", text)
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def allowed(name: str) -> bool:
    """A gateway metric (histograms with their sample suffixes), one of the ``--workers``
    supervisor's own, an operator metric, or ``up``."""
    if name in METRIC_NAMES or name in SUPERVISOR_METRIC_NAMES or name in OPERATOR_METRICS or name in ALLOWED_OTHER:
        return True
    return any(name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS for suffix in HISTOGRAM_SUFFIXES)


def unknown_names(exprs: Iterable[str]) -> dict[str, set[str]]:
    """expr -> the names in it that no component exports (empty when all are known)."""
    out: dict[str, set[str]] = {}
    for expr in exprs:
        bad = {n for n in metric_names(expr) if not allowed(n)}
        if bad:
            out[expr] = bad
    return out
