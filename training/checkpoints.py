"""Where a training run keeps its resume point and builds its export, and the lock that keeps two runs apart.

Each `--out` folder has its own `checkpoints/NAME-KEY/` (NAME the folder's name, KEY a short digest of its full
path): two runs into folders of the same name elsewhere do not resume from, overwrite or delete each other's
checkpoints. A run holds that folder's lock while it trains and writes, so a second run into the same `--out` is
refused at once instead of overwriting the first one's checkpoints and export as they are written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHECKPOINTS = Path("checkpoints")
LOCK = "run.lock"


class RunInProgress(Exception):
    """Another training run is writing the same `--out` folder now; nothing was trained."""


def checkpoint_dir(out: Path) -> Path:
    """The run's folder under checkpoints/ for the model folder `out` (relative to the working folder)."""
    key = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:8]
    return CHECKPOINTS / f"{out.name}-{key}"


def legacy_checkpoint(out: Path) -> Path | None:
    """A resume point of the older layout, `checkpoints/NAME/last.pt` (shared by every folder named NAME)."""
    path = CHECKPOINTS / out.name / "last.pt"
    return path if path.is_file() else None


@contextmanager
def exclusive(folder: Path, out: Path) -> Iterator[None]:
    """Hold `folder`'s lock for the block; RunInProgress when another process holds it. The lock goes with the
    process, so a run that was killed leaves nothing to clean up; a run that saved nothing leaves no folder."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInProgress(
                f"--out {out}: another training run is writing this model now (its checkpoints are in {folder}/); "
                "wait for it to finish, or choose another --out"
            ) from None
        try:
            yield
        finally:
            # Refused before training (or removed by the finished run): no folder to leave behind.
            if folder.is_dir() and [p.name for p in folder.iterdir()] == [LOCK]:
                (folder / LOCK).unlink()
                folder.rmdir()
                with contextlib.suppress(OSError):  # checkpoints/ too, unless other runs keep theirs there
                    folder.parent.rmdir()
