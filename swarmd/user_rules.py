"""The operator's `[[rules]]` from `monitor.toml` turned into `Rule`s and put before
the built-ins (`rules`): a user rule named like a built-in replaces it, and
`enabled = false` removes it. Bad specs raise one `ValueError` naming the rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from swarmd.domain import Verdict
from swarmd.rules import Rule, default_rules

if TYPE_CHECKING:
    from swarmd.config import RuleSpec

__all__ = ["build_rules"]


def build_rules(specs: Sequence[RuleSpec]) -> tuple[Rule, ...]:
    """User rules (in file order) followed by the built-ins they do not replace.

    A spec named like a built-in replaces it, or removes it with `enabled = false`.
    A disabled spec is not validated: it only names what to switch off.
    """
    replaced: set[str] = set()
    user: list[Rule] = []
    for spec in specs:
        if spec.name in replaced:
            raise ValueError(f"rule {spec.name!r}: defined twice")
        replaced.add(spec.name)
        if spec.enabled:
            user.append(_rule_from_spec(spec))
    return (*user, *(r for r in default_rules() if r.name not in replaced))


def _rule_from_spec(spec: RuleSpec) -> Rule:
    name = spec.name
    if not name:
        raise ValueError(f"rule {name!r}: empty name")
    try:
        verdict = Verdict(spec.verdict.strip().lower())
    except ValueError:
        allowed = ", ".join(v.value for v in Verdict)
        raise ValueError(
            f"rule {name!r}: unknown verdict {spec.verdict!r} (one of: {allowed})"
        ) from None
    try:
        pattern = re.compile(spec.pattern)
    except re.error as exc:
        raise ValueError(
            f"rule {name!r}: bad pattern {spec.pattern!r}: {exc}"
        ) from None
    exception = spec.exception
    if not exception and pattern.search("") is not None:
        raise ValueError(f"rule {name!r}: pattern {spec.pattern!r} matches every line")
    return Rule(name, pattern, verdict, spec.kind or name, exception)
