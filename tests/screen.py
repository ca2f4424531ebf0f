"""What a terminal keeps of a program's output: its scrollback, as text.

Enough of a terminal for Rich's live view: printable text, carriage return,
newline, cursor up (`CSI n A`), erase line (`CSI 2 K`); colours and the cursor's
visibility are noted and dropped. A live region that was redrawn and finally
erased leaves nothing, as on a real screen.
"""

from __future__ import annotations

import re

CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def scrollback(raw: str, width: int = 100) -> list[str]:
    """The lines a terminal `width` columns wide shows after `raw`, trailing blanks dropped."""
    lines: list[list[str]] = [[]]
    row = col = 0
    pos = 0
    while pos < len(raw):
        if m := CSI.match(raw, pos):
            arg, op = m.group(1), m.group(2)
            if op == "A":
                row = max(0, row - int(arg or 1))
            elif op == "K" and arg == "2":
                lines[row] = []
            pos = m.end()
            continue
        ch = raw[pos]
        pos += 1
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
        elif ch >= " ":
            if col >= width:
                row, col = row + 1, 0
            while len(lines) <= row:
                lines.append([])
            line = lines[row]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = ch
            col += 1
        while len(lines) <= row:
            lines.append([])
    text = ["".join(line).rstrip() for line in lines]
    while text and not text[-1]:
        text.pop()
    return text
