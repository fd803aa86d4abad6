"""Where a server's time goes under one workload: py-spy samples its Python threads while the load runs.

py-spy attaches to the running server by pid (no change to the server, every thread seen, not only the event
loop's), samples only threads that are running (not idle ones), and writes collapsed stacks; the summary ranks
functions by cumulative share (samples whose stack holds the function) and gives each one's own share (samples
where it is the innermost frame). Native threads (onnxruntime's intra-op pool) are not Python threads: their work
shows as time inside the Python call that waits for them (`InferenceSession.run`). py-spy's idle test does not
catch every blocked call: own samples in `_worker` (an executor thread waiting for work), `Condition.wait` and the
event loop's `Runner.run` (uvloop, C) are mostly waiting, not work. Attaching needs ptrace rights
over the server (root, or CAP_SYS_PTRACE); without them, or without py-spy, the summary says why instead.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

RATE = 250  # samples per second
ATTACH_S = 1.0  # py-spy has attached and is sampling by then


def _py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.is_file() else shutil.which("py-spy")


def _stacks(collapsed: str, parent: int | None) -> list[tuple[list[str], int]]:
    """(frames, count) per collapsed line. With --subprocesses each stack starts with its process
    (`process PID:"command line"`): that frame goes, and so do the stacks of `parent` when its children have any
    (a supervisor waiting on its server processes is not the server's work)."""
    stacks: list[tuple[int | None, list[str], int]] = []
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        process = None
        if frames[0].startswith("process "):
            process = int(frames[0].removeprefix("process ").partition(":")[0])
            frames = frames[1:]
        if frames:
            stacks.append((process, frames, int(count)))
    children = any(process not in (None, parent) for process, _, _ in stacks)
    return [(frames, n) for process, frames, n in stacks if not (children and process == parent)]


def summarize(collapsed: str, top: int = 15, own_top: int = 10, parent: int | None = None) -> dict[str, Any]:
    """Rank the functions in py-spy's collapsed stacks (`frame;frame;... count` lines, outermost first).

    `top`: by cumulative share, leaving out pass-through frames (no own samples, and exactly as many samples as
    other functions: the runpy/uvicorn/middleware chain every request goes through; of such a chain the functions
    with own samples are kept, else its outermost); `own_top`: by own share.
    """
    cumulative: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for frames, count in _stacks(collapsed, parent):
        total += count
        own[frames[-1]] += count
        for frame in dict.fromkeys(frames):  # recursion counts a sample once; outermost first, so ties keep order
            cumulative[frame] += count
    if not total:
        return {"samples": 0, "top": [], "own": []}
    groups: dict[int, list[str]] = {}  # functions with the same cumulative samples: one chain, most often
    for function, n in cumulative.most_common():
        groups.setdefault(n, []).append(function)
    ranked = [
        {"function": f, "cumulative": n / total, "own": own[f] / total}
        for n, functions in groups.items()
        for f in ([f for f in functions if own[f]] or functions[:1])
    ]
    by_own = [{"function": f, "cumulative": cumulative[f] / total, "own": n / total} for f, n in own.most_common()]
    return {"samples": total, "top": ranked[:top], "own": by_own[:own_top]}


def profile(pid: int, load: Callable[[], Any], top: int = 15) -> dict[str, Any]:
    """Sample process `pid` and its server processes with py-spy while `load()` runs; the summary, or
    {"error": why} when py-spy cannot."""
    py_spy = _py_spy()
    if py_spy is None:
        load()
        return {"error": "py-spy is not installed (pip install -e '.[bench]')"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        command = [py_spy, "record", "--pid", str(pid), "--subprocesses", "--rate", str(RATE), "--nolineno"]
        command += ["--format", "raw"]
        spy = subprocess.Popen([*command, "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(ATTACH_S)
        if spy.poll() is not None:
            load()
            return {"error": f"py-spy could not attach: {spy.communicate()[1].decode(errors='replace').strip()[-300:]}"}
        load()
        spy.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        try:
            _, err = spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.communicate()
            return {"error": "py-spy did not stop within 30 s of SIGINT"}
        if not out.is_file():
            return {"error": f"py-spy wrote nothing: {err.decode(errors='replace').strip()[-300:]}"}
        return summarize(out.read_text(), top, parent=pid)


def render(name: str, summary: dict[str, Any]) -> list[str]:
    """A report block: the workload, then the top functions by cumulative share and by own share."""
    if "error" in summary:
        return [f"{name}: no profile ({summary['error']}).", ""]
    lines = [f"{name} ({summary['samples']} samples):", ""]
    for title, key in (("by cumulative share", "top"), ("by own share", "own")):
        lines += ["```", f"{'cumulative':>10} {'own':>6}  function (file), {title}"]
        lines += [f"{t['cumulative']:>10.1%} {t['own']:>6.1%}  {t['function']}" for t in summary[key]]
        lines += ["```", ""]
    return lines
