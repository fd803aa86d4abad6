"""The README's table of shipped models, printed from their manifests so no figure is typed by hand.

    python -m training.catalog models          # print the table
    python -m training.catalog models --check README.md   # exit 1 if the README's copy is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.manifest import Manifest, load_manifest

BEGIN, END = "<!-- models-table:begin -->", "<!-- models-table:end -->"


def _fmt(value, spec: str = ".1f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def _row(m: Manifest) -> str:
    x = m.metrics
    frechet = "–" if x.frechet_distance is None else f"{x.frechet_distance:.1f} (floor {x.frechet_floor:.1f})"
    cells = [
        f"`{m.name}`", m.kind, str(m.latent_dim), f"{m.training.beta:g}",
        f"{m.training.best_epoch}/{m.training.epochs}", f"{m.training.train_seconds:.0f} s",
        _fmt(x.iw_bound), _fmt(x.negative_elbo), _fmt(x.reconstruction), _fmt(x.kl),
        f"{x.active_units}/{m.latent_dim}", _fmt(x.recon_squared_error, ".2f"),
        _fmt(None if x.label_agreement is None else 100 * x.label_agreement, ".1f", "%"), frechet,
    ]
    return "| " + " | ".join(cells) + " |"


def table(models_dir: Path) -> str:
    manifests = [load_manifest(p) for p in sorted(Path(models_dir).iterdir()) if (p / "manifest.json").is_file()]
    head = ("| model | kind | latent | beta | best epoch | training | -log p(x) bound (IW) | -ELBO | reconstruction "
            "| KL | active units | squared error | label agreement | Frechet distance |")
    rule = "|" + "---|" * (head.count("|") - 1)
    return "\n".join([head, rule, *(_row(m) for m in manifests)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.catalog", description=__doc__.splitlines()[0])
    p.add_argument("models_dir", type=Path)
    p.add_argument("--check", type=Path, help="a README whose table between the markers must equal this one")
    a = p.parse_args(argv)
    current = table(a.models_dir)
    if a.check is None:
        print(current)
        return 0
    text = a.check.read_text()
    inside = text.split(BEGIN, 1)[-1].split(END, 1)[0].strip() if BEGIN in text else ""
    if inside != current:
        print(f"{a.check}: the models table is stale; paste the output of `python -m training.catalog "
              f"{a.models_dir}` between the markers", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
