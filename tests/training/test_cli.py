"""The command line: a refused --out, the likelihood chosen from the data, help and defaults for every option."""

import argparse
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from training.cli import _parser, main  # noqa: E402
from training.pipeline import resolve_likelihood  # noqa: E402
from vaeformat.manifest import load_manifest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
QUICK = "--epochs 1 --base-channels 4 --hidden 16 --latent-dim 2 --iw-samples 4 --warmup-epochs 0 --no-progress".split()


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # checkpoints/ goes here
    return tmp_path


def _colour_npz(path, n=40):
    """n RGB 8x8 images in two named classes: colour data that says nothing of --channels."""
    rng = np.random.default_rng(0)
    np.savez(
        path, x=rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), y=np.arange(n) % 2, names=np.array(["red", "blue"])
    )
    return f"npz:{path}"


# Warnings are errors here: a training run prints none (torch's "converting a tensor with requires_grad=True to a
# scalar", scipy's LinAlgWarning from the Frechet distance of few, near-singular features were two).
@pytest.mark.filterwarnings("error::UserWarning", "error::RuntimeWarning")
def test_colour_data_gets_a_gaussian_likelihood_without_channels_and_its_class_names(in_tmp, capsys):
    out = in_tmp / "models" / "colour"
    assert main(["train", "--kind", "cvae", "--dataset", _colour_npz(in_tmp / "c.npz"), "--out", str(out), *QUICK]) == 0
    manifest = load_manifest(out)
    assert manifest.image.channels == 3 and manifest.likelihood == "gaussian" and manifest.gaussian_sigma > 0
    assert manifest.labels == ["red", "blue"]
    assert manifest.metrics.frechet_distance is not None
    printed = capsys.readouterr().out
    assert "gaussian likelihood" in printed and "evaluating the exported graphs on 8 held-out images" in printed


def test_likelihood_auto_follows_the_channels_after_conversion():
    assert resolve_likelihood("auto", 3) == "gaussian" and resolve_likelihood("auto", 1) == "bernoulli"
    assert resolve_likelihood("bernoulli", 3) == "bernoulli" and resolve_likelihood("gaussian", 1) == "gaussian"


def test_an_existing_model_folder_is_replaced_only_with_force(in_tmp, capsys):
    out = in_tmp / "models" / "grey"
    out.mkdir(parents=True)
    (out / "manifest.json").write_text("{}")  # a model folder, as far as the refusal is concerned
    (out / "samples.png").write_bytes(b"old")
    args = [
        "train",
        "--kind",
        "vae",
        "--dataset",
        _colour_npz(in_tmp / "c.npz"),
        "--channels",
        "1",
        "--out",
        str(out),
        *QUICK,
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "a model is already there" in err and "--force" in err
    assert (out / "manifest.json").read_text() == "{}" and (out / "samples.png").read_bytes() == b"old"
    assert not (in_tmp / "checkpoints").exists()  # refused before any work

    assert main([*args, "--force"]) == 0
    manifest = load_manifest(out)  # the new model, whole
    assert manifest.likelihood == "bernoulli"  # converted to grey, so auto is bernoulli
    assert (out / "samples.png").read_bytes() != b"old"


def test_a_folder_that_is_not_a_model_is_never_replaced(in_tmp, capsys):
    keep = in_tmp / "documents"
    keep.mkdir()
    (keep / "thesis.txt").write_text("mine")
    assert main(["train", "--kind", "vae", "--dataset", "digits", "--out", str(keep), "--force", *QUICK]) == 2
    assert "not a model folder" in capsys.readouterr().err
    assert (keep / "thesis.txt").read_text() == "mine"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", ["train", "evaluate", "fit-prior", "stamp"])
def test_every_option_has_help_and_shows_its_default(command, capsys):
    parser = _subcommands()[command]
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split())  # undo the line wrapping
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.dest}: no help text"
        flag = isinstance(action.default, bool)
        if action.required or flag or not action.option_strings:
            continue
        if action.default in (None, ""):  # nothing to show: the help says in words what happens
            assert "(default: " in action.help, f"{command} {action.dest}: default not explained"
        else:
            assert f"(default: {action.default})" in shown, f"{command} {action.dest}: default not shown"


def test_train_help_lists_defaults_from_the_configs(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "dimensions of the latent code z (default: 32)" in shown and "(default: 70)" in shown


@pytest.mark.parametrize("option", ["--epochs", "--batch-size", "--latent-dim", "--iw-samples"])
def test_counts_below_one_are_refused_before_any_work(option, in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--kind", "vae", "--dataset", "mnist", "--out", "models/m", option, "0"])
    assert exit_.value.code == 2 and f"argument {option}: must be at least 1, got 0" in capsys.readouterr().err
    assert not (in_tmp / "checkpoints").exists() and not (in_tmp / "models").exists()


def test_the_manifest_records_the_dataset_relative_or_by_name_never_by_absolute_path(in_tmp, tmp_path_factory):
    from training.pipeline import recorded_dataset

    (in_tmp / "data" / "pets").mkdir(parents=True)
    assert recorded_dataset(f"folder:{in_tmp / 'data' / 'pets'}") == "folder:data/pets"
    assert recorded_dataset("folder:data/pets") == "folder:data/pets"
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "faces.npz"
    assert recorded_dataset(f"npz:{elsewhere}") == "npz:faces.npz"
    assert recorded_dataset("mnist") == "mnist"


def test_a_model_of_non_square_images_is_evaluated_and_refitted_at_its_own_size(in_tmp):
    rng = np.random.default_rng(0)
    np.savez(in_tmp / "wide.npz", x=rng.integers(0, 256, (40, 6, 10), dtype=np.uint8))  # 6 high, 10 wide
    out = in_tmp / "models" / "wide"
    assert main(["train", "--kind", "vae", "--dataset", "npz:wide.npz", "--out", str(out), *QUICK]) == 0
    assert (load_manifest(out).image.height, load_manifest(out).image.width) == (6, 10)
    assert main(["evaluate", str(out), "--iw-samples", "4", "--no-progress"]) == 0
    assert main(["fit-prior", str(out), "--no-progress"]) == 0


@pytest.mark.parametrize(
    ("dataset", "options", "message"),
    [
        ("few.npz", ["--kind", "vae"], "leave 2 for validation, and at least 3 are needed"),
        ("one-class.npz", ["--kind", "cvae"], "at least two classes"),
        ("few.npz", ["--kind", "vae", "--out", "models/my pets"], "'my pets' becomes the model's name"),
    ],
)
def test_data_or_names_a_run_cannot_finish_with_are_refused_before_training(in_tmp, capsys, dataset, options, message):
    rng = np.random.default_rng(0)
    np.savez(in_tmp / "few.npz", x=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8))
    np.savez(in_tmp / "one-class.npz", x=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), y=np.zeros(40, np.int64))
    out = ["--out", "models/m"] if "--out" not in options else []
    assert main(["train", "--dataset", f"npz:{dataset}", *out, *options, *QUICK]) != 0
    assert message in capsys.readouterr().err and not (in_tmp / "checkpoints").exists()


def test_a_dataset_that_changed_since_training_is_refused_by_evaluate_and_fit_prior(in_tmp, capsys):
    """Its held-out rows are row numbers: in a dataset with more or fewer images they point at other images."""
    rng = np.random.default_rng(0)
    np.savez(in_tmp / "d.npz", x=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8))
    out = in_tmp / "models" / "d"
    assert main(["train", "--kind", "vae", "--dataset", "npz:d.npz", "--out", str(out), *QUICK]) == 0
    assert load_manifest(out).training.split.dataset_size == 40
    for n in (60, 20):
        np.savez(in_tmp / "d.npz", x=rng.integers(0, 256, (n, 8, 8), dtype=np.uint8))
        quiet = ["--no-progress"]
        for command in (["evaluate", str(out), *quiet], ["fit-prior", str(out), *quiet], ["fit-ood", str(out)]):
            capsys.readouterr()
            assert main(command) != 0, command
            assert f"{n} images, but d was trained on this dataset when it had 40" in capsys.readouterr().err


def test_the_last_line_says_make_run_only_where_that_serves_the_model(in_tmp, monkeypatch):
    from training.pipeline import serve_hint

    manifest = type("M", (), {"name": "pets"})()
    assert serve_hint(Path("models/pets"), manifest).startswith("serve it: vae-serve --models-dir models,")
    shutil.copy(ROOT / "Makefile", in_tmp / "Makefile")  # the repository's: its `make run` serves models/
    assert serve_hint(Path("models/pets"), manifest).startswith("serve it: make run,")
    assert serve_hint(Path("elsewhere/pets"), manifest).startswith("serve it: vae-serve --models-dir elsewhere,")
    assert "model=pets" in serve_hint(Path("models/pets"), manifest)
