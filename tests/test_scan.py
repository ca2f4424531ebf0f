"""`aether scan` and scan_memory: secrets already in .memory/ are found, by file, line and kind.

The end-to-end tests run a real `aether run` of an agent that prints every
corpus secret in every channel of the protocol, then check what reached
.memory/: no secret (redaction, issue item 20), and only valid JSON without
NaN or Infinity (item 19).
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path

import orjson
import pytest
from corpus import SecretCase, benign_files, leftovers, secret_cases
from helpers import aether

from aether_cli.scan import Finding, MissingMemoryError, Problem, scan_memory, scan_text
from aether_cli.store import files as store_files

CASES = secret_cases()
AWS = next(c for c in CASES if c.text.startswith("aws_access_key_id = AKIA"))
PEM = next(c for c in CASES if "BEGIN RSA PRIVATE KEY" in c.text)
PASSWORD_JSON = next(c for c in CASES if c.text.startswith('{"username": "admin", "password"'))


def memory(project: Path) -> Path:
    mem = project / ".memory"
    mem.mkdir(exist_ok=True)
    return mem


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def report_text(report: object) -> str:
    return orjson.dumps(report.to_dict()).decode()  # type: ignore[attr-defined]


# ------------------------------------------------------------- scan_memory


def test_a_clean_memory_folder_is_clean(project: Path) -> None:
    mem = memory(project)
    write(mem / "README.md", "# memory\n\nCheckpoints live in checkpoints/.\n")
    write(mem / "config.toml", '[budget]\ncheckpoint_at = 0.8\ntokenizer = "cl100k_base"\n')
    mem_json = {"facts": [{"key": "rule", "text": "export GITHUB_TOKEN=[REDACTED:github_token]"}]}
    (mem / "project_memory.json").write_bytes(store_files.dumps(mem_json))
    for name, text in benign_files().items():
        write(mem / "runs" / name, text)
    report = scan_memory(mem)
    assert report.clean, report.to_dict()
    assert report.files_scanned == 3 + len(benign_files())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_corpus_secret_is_found_in_a_text_file_without_printing_it(
    project: Path, case: SecretCase
) -> None:
    mem = memory(project)
    write(mem / "notes" / "today.md", f"# notes\n\nfirst line\n{case.text}\nlast line\n")
    report = scan_memory(mem)
    assert report.findings, case.text
    assert {f.path for f in report.findings} == {"notes/today.md"}
    case_lines = case.text.split("\n")
    first = min(i for i, ln in enumerate(case_lines) for sec in case.secrets if sec.split("\n")[0] in ln)
    assert min(f.line for f in report.findings) == 4 + first
    assert not report.problems
    assert not leftovers(report_text(report), case.secrets)
    assert not leftovers("\n".join(report.lines()), case.secrets)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_corpus_secret_is_found_in_json_on_its_line(project: Path, case: SecretCase) -> None:
    mem = memory(project)
    doc = {"a": "nothing here", "b": {"notes": ["x", case.text]}, "z": 1}
    (mem / "task_states" / "t.json").parent.mkdir()
    (mem / "task_states" / "t.json").write_bytes(store_files.dumps(doc))
    report = scan_memory(mem)
    lines = (mem / "task_states" / "t.json").read_text().splitlines()
    expected = 1 + next(i for i, ln in enumerate(lines) if orjson.dumps(case.text).decode() in ln)
    assert report.findings and {f.line for f in report.findings} == {expected}
    assert not leftovers(report_text(report), case.secrets)


def test_a_key_that_names_the_secret_counts_in_json(project: Path) -> None:
    mem = memory(project)
    # The escaped quote inside the value cuts the text rule's value short (it sees `Tr0ub4`,
    # by its label); the JSON key says what the whole value is.
    value = {"user": "app", "db": {"password": 'Tr0ub4"dor&3x'}}
    (mem / "creds.json").write_bytes(store_files.dumps(value))
    assert scan_text((mem / "creds.json").read_text()) == [(3, "password")]
    report = scan_memory(mem)
    assert report.findings == [Finding("creds.json", 3, "password")]  # sorted keys: "db" comes first


def test_json_escapes_cannot_hide_a_secret(project: Path) -> None:
    mem = memory(project)
    key = AWS.secrets[0]
    escaped = "".join(f"\\u{ord(ch):04x}" for ch in key)
    write(mem / "hand.json", '{\n  "note": "id ' + escaped + '"\n}\n')
    report = scan_memory(mem)
    assert [(f.path, f.kind) for f in report.findings] == [("hand.json", "aws_access_key")]
    assert report.findings[0].line == 2


def test_a_secret_in_a_dict_key_is_found(project: Path) -> None:
    mem = memory(project)
    (mem / "state.json").write_bytes(store_files.dumps({"env": {AWS.text: 1}}))
    assert [f.kind for f in scan_memory(mem).findings] == ["aws_access_key"]


def test_jsonl_findings_and_problems_name_their_lines(project: Path) -> None:
    mem = memory(project)
    records = [{"seq": 1, "kind": "launch"}, {"seq": 2, "text": AWS.text}, {"seq": 3, "kind": "exit"}]
    lines = [orjson.dumps(r).decode() for r in records]
    lines.insert(2, "{not json " + PEM.text.split("\n")[1])  # line 3: not JSON, and holds a key header
    body = "\n".join(lines) + "\n" + '{"seq": 4, "torn'  # a torn last line is normal after a crash
    write(mem / "runs" / "ses_1.jsonl", body)
    report = scan_memory(mem)
    assert Finding("runs/ses_1.jsonl", 2, "aws_access_key") in report.findings
    assert Finding("runs/ses_1.jsonl", 3, "private_key") in report.findings
    assert report.problems == [Problem("runs/ses_1.jsonl", 3, "invalid JSON line")]


def test_invalid_json_is_a_problem_and_still_scanned_as_text(project: Path) -> None:
    mem = memory(project)
    write(mem / "broken.json", '{"a": NaN,\n "b": "' + AWS.secrets[0] + '"\n')
    report = scan_memory(mem)
    assert report.findings == [Finding("broken.json", 2, "aws_access_key")]
    assert len(report.problems) == 1 and report.problems[0].reason.startswith("invalid JSON")


def test_a_multi_line_private_key_is_found_on_its_begin_line(project: Path) -> None:
    mem = memory(project)
    text = "Resume the work.\n" + PEM.text + "\n"
    write(mem / "start.prompt", text)
    report = scan_memory(mem)
    begin = 1 + next(i for i, ln in enumerate(text.split("\n")) if "BEGIN" in ln)
    assert Finding("start.prompt", begin, "private_key") in report.findings


def test_symlinks_are_reported_and_never_followed(project: Path) -> None:
    mem = memory(project)
    outside = write(project / "outside" / "creds.txt", AWS.text + "\n")
    os.symlink(outside, mem / "creds.md")
    os.symlink(outside.parent, mem / "linked_dir")
    report = scan_memory(mem)
    assert report.findings == []
    assert report.problems == [
        Problem("creds.md", None, "a symlink; not followed"),
        Problem("linked_dir", None, "a symlink; not followed"),
    ]
    assert report.files_scanned == 0


def test_a_fifo_is_never_opened(project: Path) -> None:
    mem = memory(project)
    os.mkfifo(mem / "pipe.json")  # opening it for reading would block forever
    report = scan_memory(mem)
    assert report.problems == [Problem("pipe.json", None, "not a regular file")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_a_problem(project: Path) -> None:
    mem = memory(project)
    path = write(mem / "secret.md", "x\n")
    path.chmod(0)
    report = scan_memory(mem)
    assert [(p.path, p.reason) for p in report.problems] == [("secret.md", "cannot read: Permission denied")]


def test_a_missing_folder_is_clean_and_a_file_in_its_place_a_clear_error(project: Path) -> None:
    report = scan_memory(project / ".memory")
    assert report.absent and report.clean and report.files_scanned == 0
    write(project / "file", "x")
    with pytest.raises(MissingMemoryError, match="is not a folder"):
        scan_memory(project / "file")


def test_scan_text_places_each_secret_on_its_line() -> None:
    text = f"a\n{AWS.text}\nb\n{PASSWORD_JSON.text}\n"
    assert scan_text(text) == [(2, "aws_access_key"), (4, "password")]
    assert scan_text("nothing\nto see\n") == []


# ------------------------------------------------------------- the CLI


def test_cli_exit_codes_and_output(project: Path) -> None:
    res = aether("scan")
    assert res.returncode == 0, "a repository without .memory passes the hook"
    assert res.stdout == "no .memory here: nothing to scan\n" and res.stderr == ""
    assert aether("scan", "--no-such-flag").returncode == 2

    mem = memory(project)
    write(mem / "README.md", "# memory\n")
    res = aether("scan")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout == "no secrets found in 1 file under .memory\n"

    write(mem / "notes.md", f"one\n{AWS.text}\n")
    res = aether("scan")
    assert res.returncode == 1
    assert res.stdout.splitlines()[0] == ".memory/notes.md:2: aws_access_key"
    assert AWS.secrets[0] not in res.stdout + res.stderr

    data = orjson.loads(aether("scan", "--json").stdout)
    assert data["clean"] is False
    assert data["findings"] == [{"path": "notes.md", "line": 2, "kind": "aws_access_key"}]

    other = project.parent / "elsewhere"  # outside the working directory: shown in full
    other.mkdir()
    res = aether("scan", "--memory-dir", str(other))
    assert res.returncode == 0 and f"under {other}" in res.stdout


# ------------------------------------------------------------- end to end (issue items 19 and 20)

LEAKY_AGENT = """\
import json, sys

cases = json.load(open(sys.argv[1]))
emit = lambda obj: print(json.dumps(obj), flush=True)
emit({"type": "hello", "agent": "leaky", "capabilities": []})
for i, c in enumerate(cases):
    text = c["text"]
    emit({"type": "message", "role": "assistant", "text": "I found " + text})
    emit({"type": "tool_call", "id": f"c{i}", "name": "shell",
          "input": {"command": text, "argv": ["sh", "-c", text], "env": {text: "as a key"}}})
    emit({"type": "tool_result", "id": f"c{i}", "output": "$ cat .env\\n" + text, "is_error": i % 5 == 0})
    emit({"type": "log", "level": "warn", "text": text})
    print(text.replace("\\n", " "), flush=True)  # plain text, not the protocol
    emit({"type": "memory", "op": "add", "key": f"fact-{i}", "text": text, "pinned": i < 3})
emit({"type": "task", "id": "leaky", "title": "Rotate " + cases[0]["text"], "status": "in_progress",
      "progress": 0.5, "notes": "\\n".join(c["text"] for c in cases), "next_action": cases[1]["text"],
      "files": [cases[2]["text"]]})
# Python's json writes NaN and Infinity, which are not JSON: aether must never store them.
emit({"type": "usage", "context_tokens": float("nan")})
emit({"type": "task", "id": "leaky", "progress": float("inf")})
emit({"type": "tool_call", "id": "nan", "name": "calc", "input": {"x": float("-inf")}})
emit({"type": "done", "summary": "done with " + cases[3]["text"]})
"""


def run_leaky_agent(project: Path) -> None:
    """`aether run` an agent that prints every corpus secret in every protocol channel."""
    cases = project / "cases.json"
    cases.write_bytes(orjson.dumps([{"text": c.text} for c in CASES]))
    agent = write(project / "leaky_agent.py", LEAKY_AGENT)
    res = aether("run", "--objective", "rotate the keys", "--", sys.executable, str(agent), str(cases))
    assert res.returncode == 0, res.stdout + res.stderr
    # The agent is not an outside file: keep the corpus out of the folder the test greps.
    cases.unlink()


def memory_files(project: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted((project / ".memory").rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_secrets_printed_by_an_agent_never_reach_memory_and_scan_agrees(project: Path) -> None:
    run_leaky_agent(project)
    files = memory_files(project)
    names = {p.relative_to(project / ".memory").as_posix() for p in files}
    assert {"project_memory.json", "task_states/task_leaky_state.json"} <= names
    assert any(n.startswith("checkpoints/") for n in names) and any(n.endswith(".jsonl") for n in names)
    everything = b"\n".join(files.values()).decode("utf-8")
    for case in CASES:
        assert not leftovers(everything, case.secrets), case.text
    assert everything.count("[REDACTED:") >= len(CASES)

    res = aether("scan")
    assert res.returncode == 0, res.stdout
    assert res.stdout.startswith("no secrets found")

    # A secret put there by hand (not through aether) is found, by file and line.
    write(project / ".memory" / "notes" / "handoff.md", f"# Handoff\n\n{PASSWORD_JSON.text}\n")
    res = aether("scan")
    assert res.returncode == 1
    assert ".memory/notes/handoff.md:3: password" in res.stdout.splitlines()
    assert not leftovers(res.stdout + res.stderr, PASSWORD_JSON.secrets)

    # A symlink planted in .memory is reported, not followed.
    (project / ".memory" / "notes" / "handoff.md").unlink()
    outside = write(project / "home_aws" / "credentials", AWS.text + "\n")
    os.symlink(outside, project / ".memory" / "notes" / "credentials.md")
    res = aether("scan")
    assert res.returncode == 1
    assert ".memory/notes/credentials.md: not scanned: a symlink; not followed" in res.stdout
    assert "aws_access_key" not in res.stdout and AWS.secrets[0] not in res.stdout


# Outside JSON strings, a NaN or Infinity token (which orjson refuses to read or write).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BAD_NUMBER = re.compile(rb"-?\b(?:NaN|Infinity)\b")


@pytest.mark.slow
def test_every_file_aether_wrote_is_valid_json_without_nan(project: Path) -> None:
    run_leaky_agent(project)
    files = memory_files(project)
    kinds = {p.suffix for p in files}
    assert {".json", ".jsonl", ".md"} <= kinds  # a run writes no config.toml
    for path, data in files.items():
        data.decode("utf-8")  # every file is UTF-8
        if path.suffix == ".json":
            value = orjson.loads(data)
            if "runs" not in path.parts:  # deterministic bytes: the file round-trips exactly
                assert store_files.dumps(value) == data, path
            assert not _BAD_NUMBER.search(_STRING.sub(b'""', data)), path
        elif path.suffix == ".jsonl":
            lines = data.split(b"\n")
            assert lines[-1] == b"", f"{path}: no torn last line after a clean run"
            for line in lines[:-1]:
                record = orjson.loads(line)
                assert store_files.dumps_line(record) == line + b"\n", path
                assert not _BAD_NUMBER.search(_STRING.sub(b'""', line)), path
        elif path.suffix == ".toml":
            tomllib.loads(data.decode())
    ledger = next(d for p, d in files.items() if p.suffix == ".jsonl")
    assert b"NaN" in ledger  # the agent's NaN line is kept, as text inside a JSON string
