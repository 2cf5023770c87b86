"""What reaches a terminal: stored text is shown as written and inert, never obeyed;
Ctrl-C and SIGTERM exit 130 with one line; arguments that are not UTF-8 exit 4."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from conftest import Runner
from milestones.ui import inert

# What a terminal would obey or that would disguise the text around it.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
MARKUP = "A [/x] [bold]b[/bold] :fire:"
HOSTILE = "ev\x1b[31mil\x07 \u202eright \x9b2J"


@pytest.fixture
def run(project_dir: Path) -> Runner:
    """The CLI, its stderr apart from its stdout (a notice must not break --json)."""
    runner = Runner(project_dir)
    runner.runner = CliRunner(mix_stderr=False)
    return runner


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # rich: no title cut short


def test_inert_escapes_controls_and_bidi_keeps_the_rest() -> None:
    assert inert("a\x1b[31mb\x07\x9b\u202ec\u2066\x7f") == \
        "a\\x1b[31mb\\x07\\x9b\\u202ec\\u2066\\x7f"
    assert inert("line\nnext\ttab") == "line\\nnext\\ttab"
    assert inert("line\nnext", keep_newlines=True) == "line\nnext"
    assert inert("[bold]é ★ 中[/bold]") == "[bold]é ★ 中[/bold]"


@given(st.text())
def test_inert_text_has_nothing_a_terminal_obeys(text: str) -> None:
    shown = inert(text)
    assert not UNSAFE.search(shown) and "\n" not in shown
    assert not UNSAFE.search(inert(text, keep_newlines=True))
    if text.isprintable():
        assert shown == text


@pytest.mark.parametrize("ui", ["simple", "rich"])
def test_markup_in_titles_is_shown_verbatim(run: Runner, ui: str, wide: None) -> None:
    run.ok("plan", MARKUP, "--task", "T [/x]", "--task", "[red]two[/red]")
    for args in (("status",), ("status", "--all"), ("list",), ("show", "1"), ("show", "1/1"),
                 ("next",), ("resume",)):
        result = run(*args, "--ui", ui)
        assert result.exit_code == 0, (args, result.output)
        out = result.output
        if args[0] in ("status", "list", "show") and args != ("show", "1/1"):
            assert MARKUP in out, (args, out)
        if args[0] in ("show", "next", "resume"):
            assert "T [/x]" in out, (args, out)


@pytest.mark.parametrize("ui", ["simple", "rich"])
def test_control_characters_in_stored_text_are_shown_inert(
        run: Runner, ui: str, wide: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILESTONE_USER", HOSTILE)  # the actor of every event
    run.ok("plan", "B \u202eevil\u202c x", "--task", "t \u2066one", "--task", "two")
    run.ok("task", "start", "1/1")
    run.ok("task", "block", "1/2", "--reason", "waits \u202eon\u202c ops")
    agent = run.json("agent", "register", "--name", "w\x1b[31mred")["agent"]["id"]
    run.ok("agent", "send", "--agent", agent, "--to", agent, "hi \u202ethere")
    for args in (("log",), ("resume",), ("status",), ("list",), ("show", "1"),
                 ("show", "1/2"), ("next",), ("agent", "list"),
                 ("agent", "inbox", "--agent", agent), ("ready",), ("storage", "status")):
        result = run(*args, *(("--ui", ui) if args[0] not in ("agent", "ready", "storage")
                               else ()))
        assert result.exit_code == 0, (args, result.output)
        assert not UNSAFE.search(result.output), (args, result.output)
    assert "\\x1b[31mil\\x07 \\u202eright \\x9b2J" in run.ok("log", "--ui", "simple")
    assert "hi \\u202ethere" in run.ok("agent", "inbox", "--agent", agent)
    # JSON keeps the exact strings
    events = run.json("log")["events"]
    assert HOSTILE in {e["actor"] for e in events}
    assert run.json("show", "1")["milestone"]["title"] == "B \u202eevil\u202c x"
    inbox = json.loads(run.ok("agent", "inbox", "--agent", agent, "--json"))
    assert inbox["messages"][0]["body"] == "hi \u202ethere"


def test_an_error_line_quoting_stored_text_is_inert(run: Runner) -> None:
    run.ok("plan", "B \u202eevil x")
    result = run("show", "2")  # the hint names the milestone that exists, by title
    assert result.exit_code == 3
    assert "\\u202e" in result.stderr and not UNSAFE.search(result.stderr), result.stderr


def test_a_description_keeps_its_lines_indented(run: Runner) -> None:
    run.ok("plan", "Doc", "--description", "first\nsecond \u202e", "--task", "t")
    out = run.ok("show", "1", "--ui", "simple")
    assert "  first\n  second \\u202e" in out


# ---------------------------------------------------------------- processes


def _cli(cwd: Path, *args: str | bytes, **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "milestones", "-C", str(cwd), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]


def _ends_interrupted(proc: subprocess.Popen[bytes], prompt: str = "") -> None:
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (proc.returncode, out, err)
    if prompt:  # the prompt's line is ended, then the one line
        first, rest = err.decode().split("\n", 1)
        assert first.strip() == prompt and rest == "milestone: interrupted\n", err
    else:
        assert err.decode() == "milestone: interrupted\n", err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_log_follow_stops_with_130_and_one_line(project_dir: Path, sig: int) -> None:
    proc = _cli(project_dir, "log", "--follow")
    assert proc.stdout is not None
    assert b"project_initialized" in proc.stdout.readline()  # it is in its loop now
    time.sleep(0.3)
    proc.send_signal(sig)
    _ends_interrupted(proc)


def test_log_follow_json_stops_with_a_json_error_of_kind_interrupted(project_dir: Path) -> None:
    proc = _cli(project_dir, "log", "--follow", "--json")
    assert proc.stdout is not None
    assert b"project_initialized" in proc.stdout.readline()
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert json.loads(err) == {"schema": 1, "error": {
        "code": 130, "kind": "interrupted", "message": "interrupted", "hint": None}}


def test_ctrl_c_at_a_prompt_is_130_and_no_answer_is_a_decline(project_dir: Path) -> None:
    subprocess.run([sys.executable, "-m", "milestones", "-C", str(project_dir), "plan", "X"],
                   check=True, capture_output=True)
    proc = _cli(project_dir, "delete", "1", stdin=subprocess.PIPE)  # stdin stays open
    time.sleep(1.5)  # at the prompt, waiting for input
    proc.send_signal(signal.SIGINT)
    _ends_interrupted(proc, prompt="Delete milestone-001 (X) and its 0 tasks? [y/N]:")
    done = subprocess.run([sys.executable, "-m", "milestones", "-C", str(project_dir),
                           "delete", "1"], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True)
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("milestone: error: not confirmed"), done.stderr
    assert "Traceback" not in done.stderr and "Aborted" not in done.stderr
    shown = subprocess.run([sys.executable, "-m", "milestones", "-C", str(project_dir),
                            "show", "1", "--json"], capture_output=True, text=True)
    assert shown.returncode == 0  # nothing was deleted


INJECT = """
import builtins, sys
real = builtins.__import__
def imp(name, *a, **k):
    if name.endswith(WHERE) or WHERE in (a[2] if len(a) > 2 and a[2] else ()):
        raise KeyboardInterrupt  # as if Ctrl-C came while this was being imported
    return real(name, *a, **k)
builtins.__import__ = imp
from milestones.console import main
main()
"""


@pytest.mark.parametrize("where", ["click", "storage", "yamlio", "cli.plan", "scale"])
def test_ctrl_c_during_start_up_is_130_and_one_line(project_dir: Path, where: str) -> None:
    """Ctrl-C while the CLI, the project or the command is still loading (from the
    moment milestone's own code runs: the interpreter's start-up before it is not
    ours to catch)."""
    code = f"WHERE = {where!r}\n" + INJECT
    proc = subprocess.run([sys.executable, "-c", code, "-C", str(project_dir), "plan", "X"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 130, proc
    assert proc.stderr == b"milestone: interrupted\n", proc.stderr
    check = subprocess.run([sys.executable, "-m", "milestones", "-C", str(project_dir),
                            "doctor"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_ctrl_c_at_any_moment_of_a_command_never_shows_a_traceback(project_dir: Path) -> None:
    for delay in (0.25, 0.3, 0.35, 0.4, 0.5, 0.7):
        for late in range(8):
            proc = _cli(project_dir, "plan", f"At {delay}", "--task", "t")
            time.sleep(delay + 0.25 * late)
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=30)
            # On a loaded machine the signal can land while the interpreter is still
            # starting (its `site` import), before any code of ours runs: Python's own
            # fatal error, out of our reach. Then the same moment, a little later.
            if b"init_import_site" not in err:
                break
        assert b"Traceback" not in err and b"Aborted" not in err, (delay, err)
        # 130 and one line; 0 when it had finished; the interpreter's own exit, at the
        # very end, may still be ended by the signal itself
        assert proc.returncode in (0, 130, -signal.SIGINT), (delay, proc.returncode, err)
        if proc.returncode == 130:
            assert err == b"milestone: interrupted\n", err
    # whatever was cut short left the project whole
    check = subprocess.run([sys.executable, "-m", "milestones", "-C", str(project_dir),
                            "doctor"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_an_argument_that_is_not_utf8_exits_4(project_dir: Path) -> None:
    log = project_dir / ".milestones" / "logs" / "progress-events.jsonl"
    before = log.read_bytes()
    proc = _cli(project_dir, "plan", b"bad \xff title")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 4, (out, err)
    text = err.decode()
    assert text.count("\n") == 1 and "argument 4" in text and "\\xff" in text, text
    assert "Traceback" not in text
    assert log.read_bytes() == before


def test_an_environment_value_that_is_not_utf8_exits_4(project_dir: Path) -> None:
    env = {**os.environ}
    envb = {k.encode(): v.encode() for k, v in env.items()}
    envb[b"MILESTONE_USER"] = b"\xfe\xff"
    proc = subprocess.run([sys.executable, "-m", "milestones", "-C", str(project_dir),
                           "plan", "X"], env=envb, capture_output=True)  # type: ignore[arg-type]
    assert proc.returncode == 4, proc
    assert b"MILESTONE_USER" in proc.stderr and b"Traceback" not in proc.stderr


def test_a_reader_that_goes_away_ends_the_command_quietly(project_dir: Path) -> None:
    """`milestone status | head -0`: the pipe is closed before the output is written.
    No error line, no storage error (exit 8), no traceback: it stops as click's commands
    stop on a closed pipe."""
    for title in ("A", "B"):
        subprocess.run([sys.executable, "-m", "milestones", "-C", str(project_dir), "plan",
                        title, "--task", "t"], check=True, capture_output=True)
    for args in (("status", "--all"), ("list", "--json"), ("next",)):
        proc = subprocess.Popen([sys.executable, "-m", "milestones", "-C", str(project_dir),
                                 *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before a byte is read
        err = proc.stderr.read().decode()
        proc.wait(timeout=60)
        assert err == "", (args, err)
        assert proc.returncode in (0, 1), (args, proc.returncode)
