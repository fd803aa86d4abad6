"""The README's model tables: the shipped models only, so a model a user trains into models/ breaks no test."""

import json
import re
import shutil
from pathlib import Path

from training.catalog import BEGIN, END, SHIPPED, main, table

ROOT = Path(__file__).resolve().parents[2]


def _copy_shipped(tmp_path: Path) -> tuple[Path, Path]:
    """models/ (manifests only: the tables read nothing else) and README.md, copied into tmp_path."""
    models = tmp_path / "models"
    for name in SHIPPED:
        (models / name).mkdir(parents=True)
        shutil.copy(ROOT / "models" / name / "manifest.json", models / name)
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    return models, readme


def test_a_model_of_your_own_in_models_does_not_break_the_readme_check(tmp_path, capsys):
    models, readme = _copy_shipped(tmp_path)
    assert main([str(models), "--check", str(readme)]) == 0
    # What the README's training section makes: another model folder beside the shipped ones.
    manifest = json.loads((models / "mnist-vae" / "manifest.json").read_text())
    (models / "my-vae").mkdir()
    (models / "my-vae" / "manifest.json").write_text(json.dumps({**manifest, "name": "my-vae"}))
    assert main([str(models), "--check", str(readme)]) == 0
    capsys.readouterr()
    assert main([str(models), "--all"]) == 0
    assert "`my-vae`" in capsys.readouterr().out  # --all shows it; the README's tables do not
    assert "`my-vae`" not in table(models)


def test_the_check_still_catches_a_stale_table_and_a_missing_shipped_model(tmp_path, capsys):
    models, readme = _copy_shipped(tmp_path)
    text = readme.read_text()
    readme.write_text(text.replace("| `mnist-vae` | vae | mnist |", "| `mnist-vae` | vae | digits |"))
    assert main([str(models), "--check", str(readme)]) == 1
    assert "is stale" in capsys.readouterr().err
    readme.write_text(text)
    shutil.rmtree(models / "mnist-ae")
    assert main([str(models), "--check", str(readme)]) == 1
    assert "mnist-ae" in capsys.readouterr().err


def test_the_table_names_each_models_dataset():
    rows = table(ROOT / "models").splitlines()
    assert rows[0].startswith("| model | kind | dataset |")
    datasets = {row.split(" | ")[0].strip("| `"): row.split(" | ")[2] for row in rows[2:]}
    assert datasets == {name: "fashion" if name.startswith("fashion") else "mnist" for name in SHIPPED}
    readme = (ROOT / "README.md").read_text()
    assert readme.split(BEGIN, 1)[1].split(END, 1)[0].strip() == "\n".join(rows)


def test_shipped_is_what_make_models_retrains():
    makefile = (ROOT / "Makefile").read_text()
    targets = re.search(r"^models:(.*)$", makefile, re.MULTILINE).group(1).split()
    assert sorted(targets) == sorted(SHIPPED)
    reported = re.search(r"^SHIPPED_MODELS := (.*)$", makefile, re.MULTILINE).group(1).split()
    assert sorted(reported) == sorted(SHIPPED)  # what `make ood-report` measures
