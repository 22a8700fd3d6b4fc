"""Every fenced block of the READMEs runs as written, against a real `ess-sidecar serve`.

The blocks are extracted from README.md and clients/python/README.md, not copied here, so a
block edited into something that does not run fails this test. Each block is one of:

- ```python: run as a script with this interpreter (.venv/bin/python, as the README says).
  Exit 0, and when it has `# → TEXT` comments, its stdout lines are exactly those texts, in
  order (`…` matches anything; times and durations are compared as "a time", "a duration").
- ```console: a transcript. Each `$ COMMAND` is run by bash; its `# exit N` line must be the
  exit code; the first and last lines of its output as shown must be the first and last
  lines printed (times and durations masked: the tables in between hold them).
- ```sh / ```bash / ```shell: run by `bash -euo pipefail`; exit 0.
- anything else, or a block that cannot run here: listed in ALLOWED with the reason.

A block that is neither run nor allow-listed fails `test_every_block_is_run_or_allow_listed`,
and an allow-list entry that matches no block fails it too.

Each block gets a fresh sidecar, started as the README starts it (`ess-sidecar serve` with
no config file, its state under `./state/` of its working folder) except that it listens on
a free port and a Unix socket of its own, never on the shared 127.0.0.1:50051. So that the
blocks reach it, exactly these substitutions are made, and nothing else is changed:

- the text `127.0.0.1:50051` in a python or sh block becomes the sidecar's TCP address;
- the text `unix:/run/ess/ess.sock` (clients/python/README.md) becomes its Unix socket;
- every command runs with `ESS_TARGET` set to the sidecar's TCP address: essctl's default
  target is `$ESS_TARGET`, then 127.0.0.1:50051, so the console commands run unchanged.

The console session is set up as README.md describes it: `essctl token new --role operator
--name alice` prints a token and a line; `tokens.toml` is `[tokens]` and that line; the
sidecar is started with `--tokens-file tokens.toml`; `ESS_TOKEN` is alice's token.

grpcurl is looked for in <repo>/.tools/bin (where scripts/install_tools.sh, run by `make
tools`, puts the pinned one), then on PATH; a block using it FAILS when it is missing, it is
never skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from ess_sidecar.testing import SidecarProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
READMES = ("README.md", "clients/python/README.md")
VENV_BIN = Path(sys.executable).parent
TOOLS_BIN = ROOT / ".tools" / "bin"
COMMAND_TIMEOUT_S = 60.0

# (file, the block's first line) -> why the block is not run.
ALLOWED = {
    ("README.md", "make run     # the sidecar on 127.0.0.1:50051, state latched in"
                  " ./state/ess.db; nothing else to set up"):
        "make run serves on the fixed, shared port 50051 until stopped and keeps its state in"
        " the work tree; make test is the suite this test is part of (CI runs it)",
    ("README.md", "proto/ess/v1/guard.proto      the contract"):
        "a listing of the source tree, not commands",
    ("clients/python/README.md", ".venv/bin/pip install -e clients/python    # ess.v1 stubs +"
                                 " ess_client (`make install` does this)"):
        "installs into the environment (make install does) and runs the client's test suite"
        " (make test does)",
}
RUN_LANGUAGES = {"python", "console", "sh", "bash", "shell"}
SUBSTITUTIONS = {"python": ("127.0.0.1:50051", "unix:/run/ess/ess.sock"),
                 "sh": ("127.0.0.1:50051",), "bash": ("127.0.0.1:50051",),
                 "shell": ("127.0.0.1:50051",)}


@dataclass(frozen=True)
class Block:
    file: str
    line: int  # of the opening fence, 1-based
    language: str
    text: str

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0].strip() if self.text.strip() else ""

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}:{self.language or 'plain'}"


FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def fenced_blocks(file: str) -> list[Block]:
    """The fenced code blocks of a Markdown file (CommonMark fences: ``` or ~~~, the info
    string's first word is the language)."""
    lines = (ROOT / file).read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        language = (opening["info"].split() or [""])[0].lower()
        body, end = [], index + 1
        while end < len(lines):
            closing = FENCE.match(lines[end])
            if closing and closing["fence"].startswith(fence) and not closing["info"].strip():
                break
            body.append(lines[end][indent:] if lines[end][:indent].isspace() else lines[end])
            end += 1
        assert end < len(lines), f"{file}:{index + 1}: a code fence is never closed"
        blocks.append(Block(file, index + 1, language, "\n".join(body) + "\n"))
        index = end + 1
    return blocks


ALL_BLOCKS = [block for file in READMES for block in fenced_blocks(file)]
RUN_BLOCKS = [block for block in ALL_BLOCKS
              if (block.file, block.first_line) not in ALLOWED
              and block.language in RUN_LANGUAGES]


# --- comparing what was shown with what was printed ------------------------------------

TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?")
DURATION = re.compile(r"\b\d+(?:\.\d+)?(?: ?ms|s|m\d{2}s|h\d{2}m|d\d{2}h)\b")


def normalized(line: str) -> str:
    """Times and durations as placeholders, runs of spaces as one."""
    return " ".join(DURATION.sub("<duration>", TIME.sub("<time>", line)).split())


def same_line(shown: str, printed: str) -> bool:
    """Whether a line printed matches the line shown; `…` in the shown one matches anything."""
    pattern = ".*".join(re.escape(part) for part in normalized(shown).split("…"))
    return re.fullmatch(pattern, normalized(printed)) is not None


def headings(lines: list[str]) -> list[list[str]]:
    """The column names of each table's heading (a row drawn with `┃`), however wide the
    terminal made the table (review 34: a column added to `essctl status` was missing from
    the README's transcript, whose first and last lines still matched)."""
    return [[name.strip() for name in line.strip().strip("┃").split("┃")]
            for line in lines if "┃" in line]


def row_names(lines: list[str]) -> list[str] | None:
    """The first cell of each row of a table drawn with `│` (its name, in a table of
    names and values), the rows a long cell wraps onto left out; None if the transcript
    cuts a table short (`…`) or holds none."""
    names = [line.strip().strip("│").split("│")[0].strip()
             for line in lines if line.lstrip().startswith("│")]
    names = [name for name in names if name]
    return None if not names or "…" in names else names


def expected_prints(script: str) -> list[str]:
    """The `# → TEXT` comments of a python block, in order."""
    return [found.group(1).strip() for found in re.finditer(r"#\s*→\s*(.*)$", script, re.M)]


@dataclass
class Step:
    command: str
    shown: list[str]
    exit_code: int | None = None


def transcript(block: Block) -> list[Step]:
    """`$ COMMAND` (a trailing backslash continues it), the output shown, then `# exit N`."""
    steps: list[Step] = []
    lines = block.text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\") and index + 1 < len(lines):
                index += 1
                command = command[:-1] + " " + lines[index].strip()
            steps.append(Step(command, []))
        elif found := re.fullmatch(r"# exit (\d+)", line.strip()):
            assert steps and steps[-1].exit_code is None, \
                f"{block.id}: `{line}` follows no command"
            steps[-1].exit_code = int(found.group(1))
        elif steps and steps[-1].exit_code is None:
            steps[-1].shown.append(line)
        else:
            assert not line.strip(), f"{block.id}: {line!r} is outside any command's output"
        index += 1
    for step in steps:
        assert step.exit_code is not None, f"{block.id}: `$ {step.command}` has no `# exit N`"
        while step.shown and not step.shown[-1].strip():
            step.shown.pop()
    return steps


# --- the sidecar, as the README starts it ------------------------------------------------

class ReadmeSidecar(SidecarProcess):
    """`ess-sidecar serve [FLAGS]` in its own working folder with no config file (so state
    goes to ./state/ess.db there, as with `make run`), on a free port and its own socket."""

    def __init__(self, workdir: Path, *flags: str) -> None:
        super().__init__(workdir)
        self.flags = flags

    def start(self, timeout_s: float = 20.0) -> ReadmeSidecar:
        serve = [str(VENV_BIN / "ess-sidecar")] if (VENV_BIN / "ess-sidecar").exists() \
            else [sys.executable, "-m", "ess_sidecar"]
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(
                [*serve, "serve", *self.flags, "--listen", self.tcp_target,
                 "--uds", str(self.uds)], cwd=self.workdir, stdout=output,
                stderr=subprocess.STDOUT)
        try:
            self.wait_serving(timeout_s)
        except grpc.RpcError as error:
            raise AssertionError(f"sidecar did not become SERVING:\n{self.output()}") from error
        return self


StartSidecar = Callable[..., ReadmeSidecar]


@pytest.fixture
def start_sidecar() -> Iterator[StartSidecar]:
    started: list[ReadmeSidecar] = []

    def start(*flags: str, workdir: Path | None = None) -> ReadmeSidecar:
        sidecar = ReadmeSidecar(workdir or Path(tempfile.mkdtemp(prefix="ess-readme-")),
                                *flags)
        started.append(sidecar)
        return sidecar.start()

    yield start
    for sidecar in started:
        sidecar.stop()
        shutil.rmtree(sidecar.workdir, ignore_errors=True)


def grpcurl_dir() -> Path:
    if (TOOLS_BIN / "grpcurl").exists():
        return TOOLS_BIN
    found = shutil.which("grpcurl")
    if found is None:
        pytest.fail(f"grpcurl is neither in {TOOLS_BIN} nor on PATH: run"
                    " scripts/install_tools.sh (`make tools`)")
    return Path(found).parent


def environment(sidecar: ReadmeSidecar, block: Block, **extra: str) -> dict[str, str]:
    """This environment without an operator's ESS_*, essctl (and grpcurl when the block uses
    it) first on PATH, the sidecar as essctl's default target, tables wide enough that no
    line we compare wraps."""
    env = {k: v for k, v in os.environ.items() if k not in ("ESS_TARGET", "ESS_TOKEN")}
    path = [str(VENV_BIN), env.get("PATH", "")]
    if "grpcurl" in block.text:
        path.insert(0, str(grpcurl_dir()))
    return {**env, "PATH": os.pathsep.join(path), "ESS_TARGET": sidecar.tcp_target,
            "COLUMNS": "250", **extra}


def substituted(block: Block, sidecar: ReadmeSidecar) -> str:
    text = block.text
    targets = {"127.0.0.1:50051": sidecar.tcp_target, "unix:/run/ess/ess.sock":
               sidecar.uds_target}
    for original in SUBSTITUTIONS.get(block.language, ()):
        text = text.replace(original, targets[original])
    return text


def run(command: list[str], sidecar: ReadmeSidecar,
        env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=sidecar.workdir, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=COMMAND_TIMEOUT_S)


def failure(what: str, result: subprocess.CompletedProcess[str],
            sidecar: ReadmeSidecar) -> str:
    return (f"{what}\n--- exit {result.returncode}\n--- stdout:\n{result.stdout}\n"
            f"--- stderr:\n{result.stderr}\n--- sidecar log:\n{sidecar.output()[-3000:]}")


# --- the tests ---------------------------------------------------------------------------

def test_every_block_is_run_or_allow_listed() -> None:
    by_key = {(block.file, block.first_line): block for block in ALL_BLOCKS}
    stale = [key for key in ALLOWED if key not in by_key]
    assert not stale, f"ALLOWED names blocks no README has (edited? removed?): {stale}"
    unrunnable = [block.id for block in ALL_BLOCKS if (block.file, block.first_line)
                  not in ALLOWED and block.language not in RUN_LANGUAGES]
    assert not unrunnable, (f"blocks that are neither run nor in ALLOWED: {unrunnable}; give"
                            f" them one of the languages {sorted(RUN_LANGUAGES)} or add them"
                            " to ALLOWED with the reason")
    # The parser found every fence (a miscount would let a block escape unnoticed).
    for file in READMES:
        fences = sum(1 for line in (ROOT / file).read_text().splitlines() if FENCE.match(line))
        assert fences == 2 * sum(1 for block in ALL_BLOCKS if block.file == file), file
    languages = {block.language for block in RUN_BLOCKS if block.file == "README.md"}
    assert {"python", "console", "sh"} <= languages, languages


def test_the_line_matcher_masks_times_and_durations_only() -> None:
    assert same_line("DRILL PASS  (total 18.1 ms)", "DRILL PASS  (total 3.4 ms)")
    assert same_line("cooldown ends at 2026-11-22 01:07:19+00:00 (2026-11-22T01:07:19.764Z),"
                     " in 14m59s", "cooldown ends at 2027-01-02 10:00:00+01:00"
                     " (2027-01-02T09:00:00.001Z), in 15m00s")
    assert same_line("until 2026-11-22T01:07:19+00:00 (900s left)", "until"
                     " 2026-12-01T15:40:46+00:00 (899s left)")
    assert same_line("a … c", "a b b c") and not same_line("a … c", "a b b d")
    assert not same_line("STRATEGY:momo is TRIPPED (version 1)",
                         "STRATEGY:momo is TRIPPED (version 2)")
    assert not same_line("True STATE_TRIPPED", "False STATE_TRIPPED")


@pytest.mark.parametrize("block", [b for b in RUN_BLOCKS if b.language == "python"],
                         ids=lambda block: block.id)
def test_python_block_runs_and_prints_what_it_shows(
        block: Block, start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar()
    script = sidecar.workdir / "snippet.py"
    script.write_text(substituted(block, sidecar))
    result = run([sys.executable, str(script)], sidecar, environment(sidecar, block))
    assert result.returncode == 0, failure(f"{block.id} failed", result, sidecar)
    shown, printed = expected_prints(block.text), result.stdout.splitlines()
    if shown:
        assert len(printed) == len(shown) and all(
            same_line(want, got) for want, got in zip(shown, printed, strict=True)), \
            failure(f"{block.id} printed other than its `# →` comments:\n" + "\n".join(shown),
                    result, sidecar)


@pytest.mark.parametrize("block", [b for b in RUN_BLOCKS
                                   if b.language in ("sh", "bash", "shell")],
                         ids=lambda block: block.id)
def test_shell_block_runs(block: Block, start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar()
    result = run(["bash", "-euo", "pipefail", "-c", substituted(block, sidecar)], sidecar,
                 environment(sidecar, block))
    assert result.returncode == 0, failure(f"{block.id} failed", result, sidecar)


def operator_session(start_sidecar: StartSidecar) -> tuple[ReadmeSidecar, str]:
    """README.md's session: alice's token from `essctl token new`, its line in tokens.toml,
    the sidecar started with --tokens-file tokens.toml. Returns the sidecar and the token."""
    workdir = Path(tempfile.mkdtemp(prefix="ess-readme-"))
    env = {**{k: v for k, v in os.environ.items() if k not in ("ESS_TARGET", "ESS_TOKEN")},
           "PATH": os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")])}
    made = subprocess.run(["essctl", "token", "new", "--role", "operator", "--name", "alice"],
                          cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S)
    assert made.returncode == 0, made.stderr
    printed = made.stdout.splitlines()

    def after(heading: str) -> str:
        """The line printed under the one that says `heading`."""
        return next(printed[i + 1] for i, line in enumerate(printed) if heading in line).strip()

    token, line = after("shown once"), after("under [tokens]")
    (workdir / "tokens.toml").write_text(f"[tokens]\n{line}\n")
    return start_sidecar("--tokens-file", "tokens.toml", workdir=workdir), token


@pytest.mark.parametrize("block", [b for b in RUN_BLOCKS if b.language == "console"],
                         ids=lambda block: block.id)
def test_console_transcript_runs_as_shown(block: Block, start_sidecar: StartSidecar) -> None:
    steps = transcript(block)
    assert steps, f"{block.id}: no `$ ` commands"
    sidecar, token = operator_session(start_sidecar)
    env = environment(sidecar, block, ESS_TOKEN=token)
    for step in steps:
        result = run(["bash", "-c", step.command], sidecar, env)
        what = f"{block.id}: `$ {step.command}`"
        assert result.returncode == step.exit_code, failure(
            f"{what} exited {result.returncode}, the README shows {step.exit_code}", result,
            sidecar)
        printed = [line for line in result.stdout.splitlines() if line.strip()]
        if step.shown:
            assert printed, failure(f"{what} printed nothing", result, sidecar)
            for which, want, got in (("first", step.shown[0], printed[0]),
                                     ("last", step.shown[-1], printed[-1])):
                assert same_line(want, got), failure(
                    f"{what}: {which} line {got!r}, the README shows {want!r}", result,
                    sidecar)
            for which, shown, got in (("columns", headings(step.shown), headings(printed)),
                                      ("rows", row_names(step.shown), row_names(printed))):
                assert shown is None or shown == got, failure(
                    f"{what}: its tables' {which} are {got}, the README shows {shown}",
                    result, sidecar)
