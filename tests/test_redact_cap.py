"""A text cut to fit a checkpoint is redacted before it is cut (issue 12, point 4).

The episode log caps what it keeps (tool inputs at 120 characters, errors at
500, ...). Cutting first and redacting later (when the store writes) let the
first half of a secret through: cut short, it no longer has the length, shape
or closing quote a rule knows it by. Found by `aether run` of an agent that
printed the secrets corpus: the first 26 characters of an AWS secret key and
of a session token reached `checkpoints/chk_*.json`.
"""

from __future__ import annotations

import random
import string

from aether_cli.tool_calls import cap, short_input

RNG = random.Random(124)
TOKEN = "ghp_" + "".join(RNG.choice(string.ascii_letters + string.digits) for _ in range(36))


def test_a_secret_across_the_cut_leaves_no_prefix_behind() -> None:
    for before in range(90, 118):
        out = cap("x" * before + " " + TOKEN + " and more", 120)
        assert len(out) <= 120 and out.endswith("…")
        assert TOKEN[:8] not in out, out


def test_a_tool_input_summary_does_not_keep_half_a_token() -> None:
    command = f"cd /srv/application/current && git remote set-url --push origin https://{TOKEN}@github.com/a/b"
    summary = '{"command":"' + command
    assert summary.index(TOKEN) < 119 < summary.index(TOKEN) + len(TOKEN)  # the cut falls in the token
    out = short_input({"command": command})
    assert len(out) <= 120 and TOKEN[:8] not in out, out


def test_short_text_is_returned_as_it_is() -> None:
    assert cap("short", 120) == "short"
    assert cap("y" * 200, 120) == "y" * 119 + "…"
