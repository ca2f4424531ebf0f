"""The whole cycle in about a second: Supervisor.run through its spawn seam, with a
real (tiny) child process, a checkpoint in the middle and a relaunch."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from aether_cli.launcher import Child, spawn
from aether_cli.settings import Settings
from aether_cli.store import MemoryStore
from aether_cli.supervisor import Supervisor

# Launch 1 reports a nearly full context, answers the checkpoint request with its
# state and exits when told to stop; launch 2 says done.
AGENT = """
import json, pathlib, sys
def say(**ev): print(json.dumps(ev), flush=True)
p = pathlib.Path('launches.txt')
n = int(p.read_text()) + 1 if p.exists() else 1
p.write_text(str(n))
sys.stdin.readline()  # start
say(type='hello', agent='t', capabilities=['checkpoint'])
if n > 1:
    say(type='done', summary='all steps done')
    sys.exit(0)
say(type='usage', context_tokens=900)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd['type'] == 'checkpoint_request':
        say(type='checkpoint', state={'objective': 'x', 'progress': ['step 1 done'],
                                      'next_actions': ['do step 2']})
    if cmd['type'] == 'stop':
        sys.exit(0)
"""


def test_a_checkpoint_and_relaunch_through_the_spawn_seam(project: Path) -> None:
    launches: list[tuple[list[str], dict[str, str], str]] = []

    def spawn_fn(argv: Sequence[str], *, env: Mapping[str, str], **kw: object) -> Child:
        prompt = Path(env["AETHER_PROMPT_FILE"]).read_text()
        launches.append((list(argv), dict(env), prompt))
        return spawn(argv, env=env, **kw)  # type: ignore[arg-type]

    settings = Settings(command=(sys.executable, "-c", AGENT), objective="x", context_window=1000)
    result = Supervisor(settings, MemoryStore(project / ".memory"), spawn_fn=spawn_fn, cwd=project).run()

    assert (result.exit_code, result.status, result.episode) == (0, "done", 2)
    assert [env["AETHER_EPISODE"] for _, env, _ in launches] == ["1", "2"]
    first, second = launches[0][1], launches[1][1]
    assert first["AETHER_CHECKPOINT"] == ""
    assert second["AETHER_CHECKPOINT"].startswith("chk_000001_")
    assert first["AETHER_SESSION"] == second["AETHER_SESSION"]
    relaunch_prompt = launches[1][2]
    assert "step 1 done" in relaunch_prompt and "do step 2" in relaunch_prompt
