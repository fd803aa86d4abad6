"""The README's tables of shipped models and of their priors, printed from the manifests so no figure is typed by hand.

    python -m training.catalog models          # print the tables of the shipped models
    python -m training.catalog models --all    # every model folder, your own too
    python -m training.catalog models --check README.md   # exit 1 if a README copy is stale

Only the models in SHIPPED are in the README's tables and its check, so a model you train into models/ (as the
training guide, docs/training.md, does) leaves them, and `make test`, as they are.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from vaeformat.errors import ManifestError

# The models this repository ships: the ones `make models` retrains (a test checks the Makefile agrees).
from vaeformat.manifest import Manifest, OodCheck, load_manifest

# The models this repository ships: the ones `make models` retrains (a test checks the Makefile agrees).
SHIPPED = ("fashion-cvae", "mnist-ae", "mnist-beta-vae", "mnist-cvae", "mnist-dae", "mnist-vae")

BEGIN, END = "<!-- models-table:begin -->", "<!-- models-table:end -->"
PRIORS_BEGIN, PRIORS_END = "<!-- priors-table:begin -->", "<!-- priors-table:end -->"
OOD_BEGIN, OOD_END = "<!-- ood-table:begin -->", "<!-- ood-table:end -->"


def _fmt(value, spec: str = ".1f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def _row(m: Manifest) -> str:
    x = m.metrics
    frechet = "–" if x.frechet_distance is None else f"{x.frechet_distance:.1f} (floor {x.frechet_floor:.1f})"
    cells = [
        f"`{m.name}`",
        m.kind,
        m.training.dataset,
        str(m.latent_dim),
        f"{m.training.beta:g}",
        f"{m.training.best_epoch}/{m.training.epochs}",
        f"{m.training.train_seconds:.0f} s",
        _fmt(x.iw_bound),
        _fmt(x.negative_elbo),
        _fmt(x.reconstruction),
        _fmt(x.kl),
        f"{x.active_units}/{m.latent_dim}",
        _fmt(x.recon_squared_error, ".2f"),
        _fmt(None if x.label_agreement is None else 100 * x.label_agreement, ".1f", "%"),
        frechet,
    ]
    return "| " + " | ".join(cells) + " |"


def _manifests(models_dir: Path, names: Sequence[str] | None) -> list[Manifest]:
    """The named models' manifests (a missing one is an error), or with names=None every model folder's."""
    models_dir = Path(models_dir)
    if names is None:
        folders = sorted(p for p in models_dir.iterdir() if (p / "manifest.json").is_file())
    else:
        folders = [models_dir / name for name in sorted(names)]
    return [load_manifest(p) for p in folders]


def table(models_dir: Path, names: Sequence[str] | None = SHIPPED) -> str:
    manifests = _manifests(models_dir, names)
    head = (
        "| model | kind | dataset | latent | beta | best epoch | training | -log p(x) bound (IW) | -ELBO "
        "| reconstruction | KL | active units | squared error | label agreement | Frechet distance |"
    )
    rule = "|" + "---|" * (head.count("|") - 1)
    return "\n".join([head, rule, *(_row(m) for m in manifests)])


def _percent(value: float | None) -> str:
    return _fmt(None if value is None else 100 * value, ".1f", "%")


def _prior_row(m: Manifest) -> str:
    x = m.metrics
    q = x.score_quantiles or {}
    score: Literal["nll", "squared_error"] = "nll" if "nll" in q else "squared_error"
    cells = [
        f"`{m.name}`",
        m.kind,
        "–" if m.prior is None else ", ".join(map(str, m.prior.components)),
        _percent(x.label_agreement),
        _percent(x.label_agreement_fitted),
        _fmt(x.frechet_distance),
        _fmt(x.frechet_distance_fitted),
        _fmt(x.frechet_floor),
        "–" if not q else f"{score} {q[score][50]:.1f} / {q[score][99]:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def priors_table(models_dir: Path, names: Sequence[str] | None = SHIPPED) -> str:
    """Both priors judged alike, and the held-out scores /score ranks against (median / 99th percentile)."""
    manifests = _manifests(models_dir, names)
    head = (
        "| model | kind | fitted components (per class) | label agreement, standard | label agreement, fitted "
        "| Frechet, standard | Frechet, fitted | Frechet floor | held-out score: median / 99th percentile |"
    )
    rule = "|" + "---|" * (head.count("|") - 1)
    return "\n".join([head, rule, *(_prior_row(m) for m in manifests)])


def _check_cell(check: OodCheck | None) -> str:
    if check is None:
        return "–"
    raw = "" if check.auroc_nll is None else f" (raw {check.auroc_nll:.3f})"
    return f"{check.auroc:.3f}{raw} / {100 * check.flagged:.1f}%"


def _ood_row(m: Manifest) -> str:
    ood = m.metrics.ood
    checks = [] if ood is None else ood.checks
    by_kind = {c.dataset: c for c in checks}
    other = next((c for c in checks if c.dataset not in OOD_KINDS), None)
    x = m.metrics
    free = "–" if x.marginal_nll is None else f"{x.marginal_nll:.1f} / {_percent(x.label_accuracy)}"
    cells = [
        f"`{m.name}`",
        "–" if ood is None or ood.held_out_flagged is None else _percent(ood.held_out_flagged),
        "–" if other is None else f"{other.dataset}: {_check_cell(other)}",
        *(_check_cell(by_kind.get(kind)) for kind in OOD_KINDS),
        free,
    ]
    return "| " + " | ".join(cells) + " |"


# The sets of python -m training.ood_report besides the other dataset, in the table's column order.
OOD_KINDS = ("uniform noise", "held-out images inverted", "letters in a font", "photograph crops")


def ood_table(models_dir: Path, names: Sequence[str] | None = SHIPPED) -> str:
    """/score's out-of-distribution test through the service: AUROC (of the raw -log p(x)) / share flagged."""
    manifests = _manifests(models_dir, names)
    head = (
        "| model | held-out flagged | other dataset: AUROC (raw) / flagged | uniform noise | inverted | letters "
        "| photo crops | no label: -log p(x) / p(y\\|x) accuracy |"
    )
    rule = "|" + "---|" * (head.count(" |"))
    return "\n".join([head, rule, *(_ood_row(m) for m in manifests)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.catalog", description=__doc__.splitlines()[0])
    p.add_argument("models_dir", type=Path, help="the folder of model folders, e.g. models")
    p.add_argument("--check", type=Path, help="a README whose table between the markers must equal this one")
    p.add_argument("--all", action="store_true", help="every model folder in MODELS_DIR, not only the shipped ones")
    a = p.parse_args(argv)
    if a.check is not None and a.all:
        p.error("--check compares the shipped models only; leave out --all")
    names = None if a.all else SHIPPED
    try:
        tables = [
            (BEGIN, END, table(a.models_dir, names)),
            (PRIORS_BEGIN, PRIORS_END, priors_table(a.models_dir, names)),
            (OOD_BEGIN, OOD_END, ood_table(a.models_dir, names)),
        ]
    except ManifestError as e:
        print(f"error: {e} (the shipped models are {', '.join(SHIPPED)})", file=sys.stderr)
        return 1
    if a.check is None:
        print("\n\n".join(current for _, _, current in tables))
        return 0
    text = a.check.read_text()
    for begin, end, current in tables:
        inside = text.split(begin, 1)[-1].split(end, 1)[0].strip() if begin in text else ""
        if inside != current:
            print(
                f"{a.check}: the table between {begin} and {end} is stale; paste the matching table printed by "
                f"`python -m training.catalog {a.models_dir}` between the markers",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
