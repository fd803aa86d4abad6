"""Model versions: how they order (newest last) and which of them the version policy serves."""

from __future__ import annotations

import re
from collections.abc import Iterable


def version_key(version: str) -> list[int | str]:
    """Orders versions as people read them: 2 before 10, 1.9 before 1.10 (digits by value, the rest as text)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", version)]


def newest_first(versions: Iterable[str]) -> list[str]:
    return sorted(versions, key=version_key, reverse=True)


def served_versions(versions: Iterable[str], policy: str) -> set[str]:
    """The versions the policy serves: `all`, `latest:N` (the N newest) or `specific:A,B` (those that exist)."""
    ordered = newest_first(versions)
    kind, _, arg = policy.partition(":")
    if kind == "all":
        return set(ordered)
    if kind == "latest":
        return set(ordered[: int(arg)])
    return set(ordered) & set(arg.split(","))


def policy_reason(policy: str) -> str:
    """Why a version is not served, in the index's words."""
    return f"not served: VAE_VERSION_POLICY is {policy}"
