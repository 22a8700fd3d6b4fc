"""Run `essctl` as the operator does: a subprocess against a real sidecar."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import queue
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ess_sidecar.adapters.auth.tokens import new_token, tokens_file_line
from ess_sidecar.domain.access import Role

ESSCTL = [sys.executable, "-m", "ess_sidecar.essctl"]


def clean_env() -> dict[str, str]:
    """The test's own environment, without an operator's ESS_TARGET / ESS_TOKEN; wide
    enough that tables never wrap a word in two."""
    env = {k: v for k, v in os.environ.items() if k not in ("ESS_TARGET", "ESS_TOKEN")}
    return {**env, "COLUMNS": "250"}


def essctl(target: str, *args: str, token: str | None = None,
           timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """One command; stdin is not a terminal, as in a script."""
    command = [*ESSCTL, "--target", target, *(["--token", token] if token else []), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=clean_env())


def essctl_json(target: str, *args: str, token: str | None = None) -> tuple[int, Any]:
    result = essctl(target, "--json", *args, token=token)
    assert result.stdout, f"no output (exit {result.returncode}): {result.stderr}"
    return result.returncode, json.loads(result.stdout)


def trip(target: str, scope: str = "strategy:momo", token: str | None = None) -> None:
    result = essctl(target, "trigger", "--scope", scope, "--reason", "drawdown breach",
                    "--code", "risk-violation", token=token)
    assert result.returncode == 0, result.stderr


def restricted(target: str, token: str | None = None) -> dict[str, dict[str, Any]]:
    """`essctl status --json`: the scopes not ARMED, by name."""
    _, status = essctl_json(target, "status", token=token)
    return {s["scope"]: s for s in status["scopes"]}


def tokens_file(folder: Path, **roles: Role) -> dict[str, str]:
    """Write folder/tokens.toml naming these principals; their tokens by name."""
    tokens = {name: new_token() for name in roles}
    lines = [tokens_file_line(name, role, tokens[name]) for name, role in roles.items()]
    (folder / "tokens.toml").write_text("[tokens]\n" + "\n".join(lines) + "\n")
    return tokens


class RunningEssctl:
    """A long-running essctl (watch): its stdout lines on a queue, read with deadlines."""

    def __init__(self, target: str, *args: str) -> None:
        self.process = subprocess.Popen([*ESSCTL, "--target", target, *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, text=True, env=clean_env())
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.stderr.extend(self.process.stderr)

    def next_json(self, timeout: float = 15.0) -> dict[str, Any]:
        line = self.lines.get(timeout=timeout)
        assert line is not None, f"essctl exited {self.process.wait()}: {''.join(self.stderr)}"
        return json.loads(line)

    def until(self, kind: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Every JSON line up to and including the first of this kind."""
        seen = [self.next_json(timeout)]
        while seen[-1]["kind"] != kind:
            seen.append(self.next_json(timeout))
        return seen

    def rest(self, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Every JSON line until essctl exits."""
        seen = []
        while (line := self.lines.get(timeout=timeout)) is not None:
            seen.append(json.loads(line))
        return seen

    def wait(self, timeout: float = 15.0) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def essctl_at_a_terminal(target: str, *args: str, answer: str, timeout: float = 30.0,
                         stdout_read: bool = True, stdout_to: Path | None = None,
                         env: dict[str, str] | None = None) -> tuple[int, str]:
    """One command whose stdin and stdout are a terminal (a pty), as for a person at 3 a.m.,
    who types `answer` once the prompt appears. Returns the exit code and what was shown.
    `stdout_read=False`: its stdout is a pipe nobody reads instead (`essctl ... | head`);
    `stdout_to`: a file (`essctl ... > file`). `env`: more environment variables."""
    leader, follower = pty.openpty()
    with contextlib.ExitStack() as files:
        stdout: Any = follower if stdout_read else subprocess.PIPE
        if stdout_to is not None:
            stdout = files.enter_context(open(stdout_to, "wb"))  # noqa: SIM115
        process = subprocess.Popen([*ESSCTL, "--target", target, *args], stdin=follower,
                                   stdout=stdout, stderr=follower,
                                   env={**clean_env(), **(env or {})})
    if process.stdout is not None:
        process.stdout.close()
    os.close(follower)
    shown, answered, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], deadline - time.monotonic())
            try:
                chunk = os.read(leader, 4096) if ready else b""
            except OSError:  # the command exited and closed the terminal
                break
            if not chunk and ready:
                break
            shown += chunk
            if not answered and b"Go ahead?" in shown:
                os.write(leader, answer.encode() + b"\n")
                answered = True
        return process.wait(timeout=max(deadline - time.monotonic(), 1)), \
            shown.decode(errors="replace")
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
