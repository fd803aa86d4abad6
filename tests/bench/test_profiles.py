"""bench/profiles.py: collapsed stacks are ranked by cumulative and own share, each sample counted once."""

from bench.profiles import render, summarize

STACKS = """\
main (app.py);handle (routes.py);render (outputs.py) 6
main (app.py);handle (routes.py);run (onnxruntime.py) 3
main (app.py);recurse (x.py);recurse (x.py) 1
garbage line
"""


def test_functions_are_ranked_by_the_share_of_samples_whose_stack_holds_them():
    summary = summarize(STACKS)
    top = {t["function"]: (t["cumulative"], t["own"]) for t in summary["top"]}
    assert summary["samples"] == 10
    assert summary["top"][0]["function"] == "main (app.py)" and top["main (app.py)"] == (1.0, 0.0)
    assert top["handle (routes.py)"] == (0.9, 0.0) and top["render (outputs.py)"] == (0.6, 0.6)
    assert top["recurse (x.py)"] == (0.1, 0.1)  # a recursive frame counts once per sample
    assert [t["function"] for t in summary["own"]][:2] == ["render (outputs.py)", "run (onnxruntime.py)"]


def test_pass_through_frames_are_left_out_of_the_cumulative_ranking():
    summary = summarize(
        "runpy (r.py);main (app.py);serve (s.py);handle (h.py) 3\nrunpy (r.py);main (app.py);idle (i.py) 1\n"
    )
    assert [t["function"] for t in summary["top"]] == ["runpy (r.py)", "handle (h.py)", "idle (i.py)"]


def test_a_profile_that_could_not_run_says_why():
    assert "py-spy is not installed" in render("bulk", {"error": "py-spy is not installed"})[0]
    assert "```" in render("bulk", summarize(STACKS))


def test_a_supervisor_waiting_on_its_server_processes_is_left_out():
    stacks = (
        'process 10:"python -m service";main (s.py);select (selectors.py) 50\n'
        'process 11:"python -m service";main (w.py);run (onnxruntime.py) 3\n'
        'process 12:"python -m service";main (w.py);render (outputs.py) 1\n'
    )
    summary = summarize(stacks, parent=10)
    assert summary["samples"] == 4
    assert {t["function"] for t in summary["own"]} == {"run (onnxruntime.py)", "render (outputs.py)"}
    alone = summarize('process 10:"python -m service";main (s.py);handle (h.py) 5\n', parent=10)
    assert alone["samples"] == 5  # one process serving on its own: its stacks are the server's
