"""The settings table of docs/service.md, printed from `service.settings` (each field's default and description).

python -m docs.settings_table                              # print the table
python -m docs.settings_table --write docs/service.md      # replace the table between the markers
python -m docs.settings_table --check docs/service.md      # exit 1 if the copy there is stale
"""

from __future__ import annotations

import argparse
import sys
from enum import Enum
from pathlib import Path

from pydantic import SecretStr

from docs.markers import print_write_or_check
from service.settings import BatchingSettings, EngineSettings, HttpSettings, LimitSettings, ModelSettings

BEGIN, END = "<!-- settings-table:begin -->", "<!-- settings-table:end -->"
# In the order a reader looks for them: what is served and where, then how it runs, then the limits.
SLICES = (ModelSettings, HttpSettings, EngineSettings, BatchingSettings, LimitSettings)


def shown(default: object) -> str:
    """A default as the environment variable would spell it."""
    if default is None or (isinstance(default, SecretStr) and not default.get_secret_value()):
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    if isinstance(default, Enum):
        return f"`{default.value}`"
    if default == "":
        return "empty"
    return f"`{default}`"


def table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for kind in SLICES:
        for name, field in kind.model_fields.items():
            meaning = (field.description or "").replace("|", "\\|")
            rows.append(f"| `VAE_{name.upper()}` | {shown(field.default)} | {meaning} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m docs.settings_table", description=__doc__.splitlines()[0])
    p.add_argument("--check", type=Path, help="a page whose table between the markers must equal this one")
    p.add_argument("--write", type=Path, help="a page whose table between the markers is replaced by this one")
    a = p.parse_args(argv)
    return print_write_or_check(table(), BEGIN, END, a.write, a.check, "python -m docs.settings_table")


if __name__ == "__main__":
    sys.exit(main())
