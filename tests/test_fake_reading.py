"""How the fake models read a prompt (tests/fakes/reading.py): they take the step the prose implies."""

from __future__ import annotations

import pytest
from fakes.reading import read_text

OBJECTIVE = 'Append the line "step K" to steps.txt for each K from 1 to 20, in order, one command per step.'


def next_step(text: str) -> int:
    return read_text(text).next_step()


@pytest.mark.parametrize(
    ("text", "step"),
    [
        (OBJECTIVE, 1),
        ("Steps 1 to 6 are done.", 7),
        ("Steps 1-6 are done; step 7 was interrupted before its result came back.", 7),
        ("Done so far: the last was call 6: Bash: echo \"step 6\" >> steps.txt \u2192 ok.", 7),
        ("Continue after call 18 (Bash: echo \"step 18\" >> steps.txt), the last one finished.", 19),
        ("Run the call that was announced but never started: Bash: echo \"step 7\" >> steps.txt", 7),
        ('Appended "step 4" to steps.txt (exit code 0).', 5),
        ("Finished commands:\n- echo step 1\n- echo step 2\nStill to do:\n- echo step 3", 3),
        # A redo named before the last step done comes first.
        ("Step 9 is done. Step 5 failed: disk full.", 5),
        # A step stated done anywhere is done, whatever else mentions it.
        ("Step 3 is done.\nLast intent (may be unfinished):\nStep 3 of 20: appending it.", 4),
    ],
)
def test_the_next_step_is_what_the_prose_says(text: str, step: int) -> None:
    assert next_step(text) == step


@pytest.mark.parametrize(
    "text",
    [
        # The misleading prompt: a step only announced reads as neither done nor to do.
        "Progress so far:\n- Last message: Step 8 of 20: appending it to steps.txt.",
        "Last tool calls:\n- Bash: echo \"step 8\" >> steps.txt",
        "Last intent (may be unfinished):\nStep 8 of 20: appending it to steps.txt.",
    ],
)
def test_a_step_never_stated_done_is_not_done(text: str) -> None:
    assert 8 not in read_text(text).done


def test_a_section_heading_lends_its_sense_to_the_plain_lines_under_it() -> None:
    text = "# Work that finished\n- echo step 1\n- echo step 2\n\n# Interrupted\n- echo step 3"
    reading = read_text(text)
    assert reading.done == {1, 2} and reading.not_done == {3}
