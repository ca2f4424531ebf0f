"""Replaying recorded multi-episode Claude Code and Codex sessions through aether.

`session` builds a realistic coding session (seeded, deterministic), `render`
writes it as the stream lines each CLI prints, `extract` reads expected facts
back from those lines alone (independent of aether's detectors), and `harness`
replays the lines through the real `aether` CLI and scores the prompts it hands
the relaunched agent. The agent itself is `tests/agents/replay_agent.py`.
"""
