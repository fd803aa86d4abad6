"""bench/targets.py: the targets table shows a figure precisely enough to tell it from its target."""

from bench.targets import measured, rows


def test_a_figure_just_over_its_target_does_not_read_as_the_target():
    assert measured(0.12041) == "0.1204" and measured(0.089) == "0.089"
    assert measured(1.514) == "1.51" and measured(210.53) == "210.53"


def test_the_table_says_which_targets_are_met():
    table = rows(
        [
            {"figure": "cpu", "value": 0.1204, "target": "<= 0.12", "met": False},
            {"figure": "speed", "value": 1.5, "target": ">= 0.8 (stretch >= 1)", "met": True, "stretch_met": True},
        ]
    )
    assert table[2] == "| cpu | 0.1204 | <= 0.12 | **no** |"
    assert table[3] == "| speed | 1.50 | >= 0.8 (stretch >= 1) | yes, stretch too |"
