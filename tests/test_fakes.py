"""The fake model servers (tests/fakes/) over real sockets: SSE shapes, the step logic, usage, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fakes import fake_anthropic, fake_openai
from fakes.scenario import STEPS_FILE, read_log

FAKES = Path(__file__).parent / "fakes"
BASE, PER_TURN = 5000, 300
BASH_TOOL = {"name": "Bash", "description": "run", "input_schema": {"type": "object"}}
EXEC_TOOL = {"type": "function", "name": "exec_command", "parameters": {"type": "object"}}


# ------------------------------------------------------------------ plumbing


def call(
    port: int, path: str, body: Any = None, *, method: str = "POST", raw: bytes | None = None
) -> tuple[int, bytes, str]:
    """(status, body bytes, content type) of one real HTTP request; error statuses are returned too."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")


def sse(payload: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs of an SSE body; each data must be one JSON object."""
    events = []
    for block in payload.decode().split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        data = json.loads(fields["data"])
        assert data["type"] == fields["event"]
        events.append((fields["event"], data))
    return events


@pytest.fixture
def workdir(project: Path) -> Path:
    return project


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "requests.jsonl"


@contextmanager
def _serve(module: Any, workdir: Path, log: Path) -> Iterator[int]:
    server, port = module.start_server(workdir, steps=3, base_tokens=BASE, tokens_per_turn=PER_TURN, log=log)
    try:
        yield port
    finally:
        server.shutdown()


@pytest.fixture
def anthropic(workdir: Path, log_path: Path) -> Iterator[int]:
    with _serve(fake_anthropic, workdir, log_path) as port:
        yield port


@pytest.fixture
def openai(workdir: Path, log_path: Path) -> Iterator[int]:
    with _serve(fake_openai, workdir, log_path) as port:
        yield port


def anthropic_body(
    n_messages: int = 1, *, stream: bool = True, tools: bool = True, prompt: str = "Do the   steps task"
) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>\ncontext\n</system-reminder>\n"},
                {"type": "text", "text": prompt},
            ],
        }
    ]
    for i in range(1, n_messages):
        messages.append({"role": "assistant" if i % 2 else "user", "content": f"turn {i}"})
    body: dict[str, Any] = {"model": "claude-test", "max_tokens": 100, "messages": messages, "stream": stream}
    if tools:
        body["tools"] = [BASH_TOOL]
    return body


def openai_body(n_items: int = 1, *, stream: bool = True, tools: list[dict[str, Any]] | None = None) -> dict:
    items: list[dict[str, Any]] = [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "<environment_context/>"}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Do the steps task"}]},
    ]
    items += [
        {"type": "function_call_output", "call_id": f"c{i}", "output": "ok"} for i in range(n_items - 2)
    ]
    return {"model": "gpt-test", "input": items[:n_items], "stream": stream, "tools": tools or [EXEC_TOOL]}


def anthropic_turn(port: int, n_messages: int = 1, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One streamed turn, folded back into a message the way a client would build it."""
    status, payload, ctype = call(port, "/v1/messages?beta=true", body or anthropic_body(n_messages))
    assert status == 200 and ctype.startswith("text/event-stream")
    events = sse(payload)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    message = events[0][1]["message"]
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    for name, data in events:
        if name == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"])
            partial[data["index"]] = ""
        elif name == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[data["index"]]["text"] += delta["text"]
            else:
                assert delta["type"] == "input_json_delta"
                partial[data["index"]] += delta["partial_json"]
        elif name == "content_block_stop" and blocks[data["index"]]["type"] == "tool_use":
            blocks[data["index"]]["input"] = json.loads(partial[data["index"]])
        elif name == "message_delta":
            message["stop_reason"] = data["delta"]["stop_reason"]
            message["output_tokens"] = data["usage"]["output_tokens"]
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def openai_turn(
    port: int, n_items: int = 2, tools: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One streamed turn: the completed response, checked against the streamed items and deltas."""
    status, payload, ctype = call(port, "/v1/responses", body or openai_body(n_items, tools=tools))
    assert status == 200 and ctype.startswith("text/event-stream")
    events = sse(payload)
    names = [name for name, _ in events]
    assert names[0] == "response.created" and names[-1] == "response.completed"
    seqs = [data["sequence_number"] for _, data in events]
    assert seqs == sorted(set(seqs))
    done = [data["item"] for name, data in events if name == "response.output_item.done"]
    args = "".join(d["delta"] for n, d in events if n == "response.function_call_arguments.delta")
    response = events[-1][1]["response"]
    assert response["output"] == done
    calls = [item for item in done if item["type"] == "function_call"]
    if calls:
        assert args == calls[0]["arguments"]
    return response


# ------------------------------------------------------------------ fake Anthropic


def test_anthropic_stream_is_a_bash_tool_call_with_json_input(anthropic: int, workdir: Path) -> None:
    message = anthropic_turn(anthropic)
    assert message["stop_reason"] == "tool_use"
    assert message["model"] == "claude-test"
    text, tool = message["content"]
    assert text["type"] == "text" and "Step 1 of 3" in text["text"]
    assert tool["type"] == "tool_use" and tool["name"] == "Bash" and tool["id"].startswith("toolu_")
    assert tool["input"]["command"] == f'echo "step 1" >> {STEPS_FILE}'


def test_anthropic_usage_is_split_and_grows_with_messages(anthropic: int) -> None:
    def context(n: int) -> int:
        usage = anthropic_turn(anthropic, n)["usage"]
        assert usage["input_tokens"] > 0 and usage["cache_read_input_tokens"] > 0
        return usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]

    assert context(1) == BASE + PER_TURN
    assert context(7) == BASE + 7 * PER_TURN


def test_anthropic_not_streaming_answers_one_json_message(anthropic: int, workdir: Path) -> None:
    body = anthropic_body(stream=False, prompt="Steps 1 to 3 are done.")
    status, payload, ctype = call(anthropic, "/v1/messages", body)
    assert status == 200 and ctype == "application/json"
    message = json.loads(payload)
    assert message["type"] == "message" and message["stop_reason"] == "end_turn"
    assert message["content"] == [{"type": "text", "text": "All 3 steps done."}]


def test_anthropic_side_query_without_tools_gets_text(anthropic: int) -> None:
    status, payload, _ = call(anthropic, "/v1/messages", anthropic_body(stream=False, tools=False))
    message = json.loads(payload)
    assert status == 200 and message["stop_reason"] == "end_turn"
    assert [b["type"] for b in message["content"]] == ["text"]


def test_anthropic_count_tokens(anthropic: int) -> None:
    status, payload, _ = call(anthropic, "/v1/messages/count_tokens", anthropic_body(3))
    assert status == 200 and json.loads(payload) == {"input_tokens": BASE + 3 * PER_TURN}


def test_anthropic_log_records_messages_and_the_prompt(anthropic: int, log_path: Path) -> None:
    anthropic_turn(anthropic, 1)
    anthropic_turn(anthropic, 5)
    records = read_log(log_path)
    assert [r["messages"] for r in records] == [1, 5]
    assert all(r["first_user"] == "Do the steps task" for r in records)
    assert [r["kind"] for r in records] == ["tool", "tool"]


# ------------------------------------------------------------------ fake OpenAI


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        ("exec_command", {"cmd": 'echo "step 1" >> steps.txt'}),
        ("shell_command", {"command": 'echo "step 1" >> steps.txt'}),
        ("shell", {"command": ["bash", "-lc", 'echo "step 1" >> steps.txt']}),
    ],
)
def test_openai_function_call_matches_the_offered_shell_tool(
    openai: int, tool: str, expected: dict[str, Any]
) -> None:
    tools = [{"type": "function", "name": "view_image"}, {"type": "function", "name": tool}]
    response = openai_turn(openai, tools=tools)
    message, call = response["output"]
    assert message["type"] == "message" and "Step 1 of 3" in message["content"][0]["text"]
    assert call["type"] == "function_call" and call["name"] == tool and call["call_id"].startswith("call_")
    assert json.loads(call["arguments"]) == expected


def test_openai_local_shell_call(openai: int) -> None:
    response = openai_turn(openai, tools=[{"type": "local_shell"}])
    call = response["output"][1]
    assert call["type"] == "local_shell_call"
    assert call["action"]["command"] == ["bash", "-lc", 'echo "step 1" >> steps.txt']


def test_openai_usage_grows_with_input_items(openai: int) -> None:
    first = openai_turn(openai, 2)["usage"]
    later = openai_turn(openai, 9)["usage"]
    assert first["input_tokens"] == BASE + 2 * PER_TURN
    assert later["input_tokens"] == BASE + 9 * PER_TURN
    assert 0 < later["input_tokens_details"]["cached_tokens"] < later["input_tokens"]


def test_openai_without_shell_tool_and_string_input(openai: int) -> None:
    body = {"model": "gpt-test", "input": "hello", "tools": [{"type": "web_search"}]}
    status, payload, ctype = call(openai, "/v1/responses", body)
    assert status == 200 and ctype == "application/json"
    response = json.loads(payload)
    assert response["status"] == "completed" and [i["type"] for i in response["output"]] == ["message"]


def test_openai_log_skips_injected_context(openai: int, log_path: Path) -> None:
    openai_turn(openai, 2)
    (record,) = read_log(log_path)
    assert record["first_user"] == "Do the steps task" and record["messages"] == 2
    assert record["tool"] == "exec_command" and record["step"] == 1


# ------------------------------------------------------------------ both


class Client:
    """A client of either API that keeps its conversation: the prompt, each turn, each command's result."""

    def __init__(self, kind: str, port: int, prompt: str) -> None:
        self.kind, self.port = kind, port
        self.history: list[dict[str, Any]] = (
            anthropic_body(prompt=prompt)["messages"]
            if kind == "anthropic"
            else [*openai_body(2)["input"][:1], {"role": "user", "content": prompt}]
        )
        self.call_id = ""

    def next_action(self) -> tuple[str | None, str]:
        """(the bash command to run or None, the text) of the next turn, added to the conversation."""
        if self.kind == "anthropic":
            body = {"model": "claude-test", "max_tokens": 100, "messages": self.history, "stream": True,
                    "tools": [BASH_TOOL]}
            message = anthropic_turn(self.port, body=body)
            self.history.append({"role": "assistant", "content": message["content"]})
            tools = [b for b in message["content"] if b["type"] == "tool_use"]
            self.call_id = tools[0]["id"] if tools else ""
            return (tools[0]["input"]["command"] if tools else None), message["content"][0]["text"]
        body = {"model": "gpt-test", "input": self.history, "stream": True, "tools": [EXEC_TOOL]}
        response = openai_turn(self.port, body=body)
        self.history += response["output"]
        calls = [i for i in response["output"] if i["type"] == "function_call"]
        self.call_id = calls[0]["call_id"] if calls else ""
        text = response["output"][0]["content"][0]["text"]
        return (json.loads(calls[0]["arguments"])["cmd"] if calls else None), text

    def result(self, exit_code: int) -> None:
        """Tell the model how its last command ended, as each client does."""
        self._answer(f"Process exited with code {exit_code}\nOutput:\n", exit_code != 0)

    def cut(self) -> None:
        """Tell the model its last command was stopped, as each client does (Codex: "aborted")."""
        if self.kind == "anthropic":
            self._answer("The user doesn't want to proceed with this tool use.", True)
        else:
            self._answer("aborted", True)

    def _answer(self, output: str, is_error: bool) -> None:
        if self.kind == "anthropic":
            block = {"type": "tool_result", "tool_use_id": self.call_id, "content": output}
            block["is_error"] = is_error
            self.history.append({"role": "user", "content": [block]})
        else:
            self.history.append({"type": "function_call_output", "call_id": self.call_id, "output": output})


def _next_action(kind: str, port: int, prompt: str = "Do the steps task") -> tuple[str | None, str]:
    """(the bash command or None, the text) of the first turn of a conversation opened by `prompt`."""
    return Client(kind, port, prompt).next_action()


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_a_client_running_the_tool_calls_finishes_the_task(
    kind: str, request_server: int, workdir: Path
) -> None:
    client = Client(kind, request_server, "Append steps 1 to 3 to steps.txt.")
    for _ in range(10):
        command, text = client.next_action()
        if command is None:
            break
        client.result(subprocess.run(["bash", "-c", command], cwd=workdir, timeout=10).returncode)
    assert text == "All 3 steps done."
    assert (workdir / STEPS_FILE).read_text() == "step 1\nstep 2\nstep 3\n"


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_a_command_cut_off_is_taken_again(kind: str, request_server: int) -> None:
    client = Client(kind, request_server, "Append steps 1 to 3 to steps.txt.")
    assert client.next_action()[0] == f'echo "step 1" >> {STEPS_FILE}'
    client.cut()
    assert client.next_action()[0] == f'echo "step 1" >> {STEPS_FILE}'


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_the_step_follows_the_prompt_not_the_workdir(
    kind: str, request_server: int, workdir: Path
) -> None:
    # The workdir says two steps are done; a fresh conversation knows only what its prompt says.
    (workdir / STEPS_FILE).write_text("step 1\nstep 2\n")
    assert _next_action(kind, request_server)[0] == f'echo "step 1" >> {STEPS_FILE}'
    said = "Steps 1 to 2 are done; step 3 was interrupted before its result came back."
    assert _next_action(kind, request_server, said)[0] == f'echo "step 3" >> {STEPS_FILE}'


BAD_BODIES = [
    (b"{not json", "not JSON"),
    (b"", "empty"),
    (b"[1, 2]", "JSON object"),
    (b'{"model": "m"}', None),
    (b'{"messages": [], "input": [], "model": "m"}', None),
    (b'{"model": 7, "messages": [{"role": "user", "content": "x"}], "input": "x"}', "model"),
]


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
@pytest.mark.parametrize(("raw", "says"), BAD_BODIES)
def test_bad_requests_get_a_json_400_and_the_server_lives_on(
    kind: str, request_server: int, raw: bytes, says: str | None
) -> None:
    path = "/v1/messages" if kind == "anthropic" else "/v1/responses"
    status, payload, ctype = call(request_server, path, raw=raw)
    assert status == 400 and ctype == "application/json"
    error = json.loads(payload)["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if says:
        assert says in error["message"]
    assert _next_action(kind, request_server)[0] is not None


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_probes_and_unknown_paths_are_harmless(kind: str, request_server: int) -> None:
    assert call(request_server, "/", method="HEAD")[0] == 200
    assert call(request_server, "/", method="GET")[0] == 200
    assert call(request_server, "/v1/models", method="GET")[0] == 200
    status, payload, _ = call(request_server, "/v1/nope", {"a": 1})
    assert status == 404 and "error" in json.loads(payload)
    assert call(request_server, "/nope", method="GET")[0] == 404


@pytest.fixture
def request_server(request: pytest.FixtureRequest, workdir: Path, log_path: Path) -> Iterator[int]:
    """The server named by the test's `kind` parameter."""
    module = fake_anthropic if request.node.callspec.params["kind"] == "anthropic" else fake_openai
    with _serve(module, workdir, log_path) as port:
        yield port


@pytest.mark.parametrize("script", ["fake_anthropic.py", "fake_openai.py"])
def test_runs_as_a_script_and_writes_its_port(script: str, workdir: Path, tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(FAKES / script),
            "--port",
            "0",
            "--workdir",
            str(workdir),
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        port = int(port_file.read_text())
        status, payload, _ = call(port, "/", method="GET")
        assert status == 200 and json.loads(payload) == {"ok": True}
    finally:
        proc.terminate()
        out, _err = proc.communicate(timeout=10)
    assert out.strip() == str(port)


def test_script_refuses_a_missing_workdir_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(FAKES / "fake_openai.py"), "--workdir", str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "is not a directory" in proc.stderr and "Traceback" not in proc.stderr
