"""checkpoints.py through the command line: each --out folder has its own checkpoints, a second run into a folder
that a run is writing is refused, and Ctrl-C says how to resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from tests.training.quick import QUICK  # noqa: E402
from training.checkpoints import CHECKPOINTS, LOCK, RunInProgress, checkpoint_dir, exclusive  # noqa: E402
from training.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # checkpoints/ goes here
    return tmp_path


def test_folders_of_one_name_in_two_places_have_their_own_checkpoints(in_tmp):
    here, there = Path("models/vae"), Path("experiments/vae")
    assert checkpoint_dir(here) != checkpoint_dir(there)
    assert checkpoint_dir(here) == checkpoint_dir(in_tmp / "models" / "vae")  # relative or absolute: one folder
    assert checkpoint_dir(here).parent == CHECKPOINTS and checkpoint_dir(here).name.startswith("vae-")


def test_a_run_into_a_folder_another_run_is_writing_is_refused_before_any_work(in_tmp, capsys):
    out = Path("models/tiny-vae")
    args = ["train", "--kind", "vae", "--dataset", "digits", "--limit", "200", "--out", str(out), *QUICK]
    with exclusive(checkpoint_dir(out), out):  # the other run, holding the lock as it trains
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "another training run is writing this model now" in err and str(checkpoint_dir(out)) in err
        assert not out.exists()
        with pytest.raises(RunInProgress):
            with exclusive(checkpoint_dir(out), out):
                pass
    assert not CHECKPOINTS.exists()  # the lock alone is not left behind
    assert main(args) == 0 and (out / "manifest.json").is_file()  # once that run is over


def test_a_run_refused_after_taking_the_lock_leaves_no_folder(in_tmp):
    folder = checkpoint_dir(Path("models/x"))
    with pytest.raises(ValueError), exclusive(folder, Path("models/x")):
        assert (folder / LOCK).is_file()
        raise ValueError("refused")
    assert not folder.exists() and not CHECKPOINTS.exists()


def test_ctrl_c_during_training_says_where_the_checkpoint_is_and_how_to_resume(tmp_path):
    out = tmp_path / "models" / "tiny-vae"
    command = [sys.executable, "-m", "training", "train", "--kind", "vae", "--dataset", "digits", "--out", str(out)]
    command += ["--epochs", "200", "--base-channels", "4", "--hidden", "32", "--latent-dim", "4", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    last = tmp_path / checkpoint_dir(out) / "last.pt"
    deadline = time.monotonic() + 120
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert last.is_file(), process.communicate()[1] if process.poll() is not None else "no epoch finished in 120 s"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert f"interrupted; the last finished epoch is kept in {checkpoint_dir(out)}/last.pt" in err
    assert "--resume" in err and last.is_file() and not out.exists()


def test_resume_with_only_an_older_layouts_checkpoint_says_where_to_move_it_and_then_resumes(in_tmp, capsys):
    out = Path("models/tiny-vae")
    args = ["train", "--kind", "vae", "--dataset", "digits", "--limit", "200", "--out", str(out), "--force", *QUICK]
    assert main([*args, "--keep-checkpoint"]) == 0
    older = CHECKPOINTS / "tiny-vae" / "last.pt"  # where earlier versions kept every "tiny-vae" folder's
    checkpoint_dir(out).rename(older.parent)
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    last = checkpoint_dir(out) / "last.pt"
    assert f"(mkdir -p {last.parent} && mv {older} {last})" in err
    assert older.is_file() and not last.parent.exists()  # nothing moved or made on a guess
    last.parent.mkdir(parents=True)  # the advice, followed
    older.rename(last)
    assert main([*args, "--resume"]) == 0
    assert f"resumed from {last}" in capsys.readouterr().out
