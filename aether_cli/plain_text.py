"""Agent text made plain: no terminal escape sequences, no control characters.

An agent's output may hold `\\033[2J`, a window title, a cursor move or a
bidirectional override. Wherever that text goes next (the user's terminal, a
model command's prompt, a checkpoint), it must arrive as the words it shows,
not as instructions to a terminal. This module knows nothing of where the text
goes; `render` shows it, `episode_log` keeps it.
"""

from __future__ import annotations

import re

# Terminal escape sequences, 7-bit and 8-bit: CSI (cursor, colour, clear), OSC (window title,
# hyperlinks, clipboard) and the string ones (DCS, SOS, PM, APC) up to their terminator or the
# end of the text, and any other ESC with the bytes that belong to it.
_ESCAPE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# Other control characters: C0 but tab and newline, DEL, C1, and the bidirectional overrides
# and isolates that make text read other than it is.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """`text` without control characters and escape sequences; ordinary text, tabs and
    newlines are kept (a CRLF becomes a newline)."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub("", _ESCAPE.sub("", text.replace("\r\n", "\n")))
