"""Encryption at rest, through the CLI: nothing under .milestones/ holds a protected
field's plain text after a full workout (files, database pages, rotated gzipped logs,
backups); no key shows [encrypted]; a wrong key is an error that changes nothing; a
flipped ciphertext byte is reported; `encrypt rotate` and `off`; a SIGKILLed rotate
loses nothing."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Runner

SECRETS = {
    "mdesc": "PLAIN-milestone-description-q7",
    "mdesc2": "PLAIN-updated-description-z3",
    "tdesc": "PLAIN-task-description-k9",
    "tedit": "PLAIN-task-edited-w2",
    "reason": "PLAIN-blocker-reason-m5",
    "reason2": "PLAIN-second-reason-v8",
    "note": "PLAIN-session-note-h4",
    "note2": "PLAIN-later-note-j6",
}


def _bytes_of(path: Path) -> list[bytes]:
    """A file's bytes, and what a .gz or .tar.gz holds (members, nested .gz too)."""
    raw = path.read_bytes()
    out = [raw]
    if path.name.endswith(".gz"):
        inner = gzip.decompress(raw)
        out.append(inner)
        if path.name.endswith(".tar.gz"):
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
                for m in tar.getmembers():
                    f = tar.extractfile(m)
                    if f is None:
                        continue
                    data = f.read()
                    out.append(data)
                    if m.name.endswith(".gz"):
                        out.append(gzip.decompress(data))
    return out


def plaintext_leaks(root: Path, secrets: dict[str, str] = SECRETS) -> list[str]:
    """Every (file, secret) where a secret's plain text is found under ``root``: raw
    bytes (SQLite pages and -wal files read as bytes), decompressed .gz, tar members."""
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        for blob in _bytes_of(path):
            for name, text in secrets.items():
                if text.encode() in blob:
                    found.append(f"{path.relative_to(root)}: {name}")
    return sorted(set(found))


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and path.name != ".lock" and rel.parts[0] != "performance":
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def workout(run: Runner, root: Path) -> None:
    """Create, edit, block, note, migrate to each backend and back, rotate the log,
    back up: every protected field written on every backend."""
    cfg = root / "config" / "config.yaml"
    cfg.write_text(cfg.read_text() + "logs:\n  rotate_bytes: 2000\n")
    run.ok("plan", "Alpha", "-d", SECRETS["mdesc"], "-t", "First", "-t", "Second",
           "--tag", "web")
    run.ok("plan", "Beta", "-t", "Other", "--tag", "api")
    run.ok("task", "add", "1", "Third", "-d", SECRETS["tdesc"])
    run.ok("storage", "migrate", "--to", "database")
    run.ok("task", "edit", "1/1", "-d", SECRETS["tedit"])
    run.ok("task", "block", "1/2", "-r", SECRETS["reason"])
    run.ok("storage", "migrate", "--to", "hybrid")
    run.ok("note", SECRETS["note"])
    run.ok("update", "1", "-d", SECRETS["mdesc2"])
    run.ok("storage", "migrate", "--to", "file")
    run.ok("task", "unblock", "1/2")
    run.ok("task", "block", "1/2", "-r", SECRETS["reason2"])
    for i in range(6):  # past rotate_bytes: the log rotates into gzipped archives
        run.ok("task", "progress", "1/3", str(10 * (i + 1)))
    run.ok("note", SECRETS["note2"])
    run.ok("storage", "migrate", "--to", "database")
    run.ok("backup")


@pytest.fixture
def enc(run: Runner, project_dir: Path) -> Runner:
    out = run.json("encrypt", "init")
    assert out["key_created"] and len(out["key_id"]) == 16
    return run


def test_workout_leaves_no_plain_text_anywhere(enc: Runner, project_dir: Path) -> None:
    root = project_dir / ".milestones"
    key = root / "config" / "encryption.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert ".milestones/config/encryption.key*" in (project_dir / ".gitignore").read_text()
    workout(enc, root)
    assert list((root / "logs" / "archive").glob("*.gz")), "the log never rotated"
    assert plaintext_leaks(root) == []
    # ... while every command reads the plain text with the key
    m = enc.json("show", "1")["milestone"]
    assert m["description"] == SECRETS["mdesc2"]
    tasks = {t["id"]: t for t in m["tasks"]}
    assert tasks["task-1"]["description"] == SECRETS["tedit"]
    assert tasks["task-2"]["blockers"] == [SECRETS["reason2"]]
    assert tasks["task-3"]["description"] == SECRETS["tdesc"]
    log = json.dumps(enc.json("log"))
    for name in ("mdesc", "tdesc", "tedit", "reason", "note"):
        assert SECRETS[name] in log
    assert SECRETS["note2"] in json.dumps(enc.json("resume"))
    assert SECRETS["reason2"] in enc.ok("status")
    # filtering on what is not protected still works
    assert [r["id"] for r in enc.json("list", "--tag", "api")["milestones"]] == ["milestone-002"]
    assert enc("doctor").exit_code == 0
    # the backup carries the data, never the key
    for tgz in (root / "database" / "backup").glob("*.tar.gz"):
        with tarfile.open(tgz) as tar:
            assert not [n for n in tar.getnames() if "encryption.key" in n]


def test_without_the_key_fields_show_encrypted(enc: Runner, project_dir: Path) -> None:
    enc.ok("plan", "Alpha", "-d", SECRETS["mdesc"], "-t", "First", "--tag", "web")
    enc.ok("task", "block", "1/1", "-r", SECRETS["reason"])
    key = project_dir / ".milestones" / "config" / "encryption.key"
    kept = key.read_bytes()
    key.unlink()
    shown = enc.json("show", "1")["milestone"]
    assert shown["description"] == "[encrypted]"
    assert shown["tasks"][0]["blockers"] == ["[encrypted]"]
    assert shown["title"] == "Alpha"
    assert "[encrypted]" in enc.ok("show", "1/1")
    assert enc("status").exit_code == 0 and enc("next").exit_code == 0
    assert SECRETS["reason"] not in enc.ok("log")
    # a write that touches no protected field works; one that sets one is refused
    enc.ok("task", "add", "1", "Plain title")
    before = tree_digest(project_dir / ".milestones")
    refused = enc("task", "add", "1", "Other", "-d", "new secret")
    assert refused.exit_code == 4 and "no key" in refused.output
    assert tree_digest(project_dir / ".milestones") == before
    key.write_bytes(kept)
    assert enc.json("show", "1")["milestone"]["description"] == SECRETS["mdesc"]


def test_the_key_from_the_environment(run: Runner, project_dir: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    run.ok("plan", "Alpha", "-d", SECRETS["mdesc"])
    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("MILESTONE_KEY", key)
    out = run.json("encrypt", "init")
    assert out["key_created"] is False
    root = project_dir / ".milestones"
    assert not (root / "config" / "encryption.key").exists()
    assert plaintext_leaks(root) == []  # sealed, history too; the pre-init copy is gone
    assert run.json("show", "1")["milestone"]["description"] == SECRETS["mdesc"]
    monkeypatch.setenv("MILESTONE_KEY", base64.b64decode(key).hex())  # hex works too
    assert run.json("show", "1")["milestone"]["description"] == SECRETS["mdesc"]
    monkeypatch.delenv("MILESTONE_KEY")
    assert run.json("show", "1")["milestone"]["description"] == "[encrypted]"


def test_a_wrong_key_is_an_error_and_changes_nothing(enc: Runner, project_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    enc.ok("plan", "Alpha", "-d", SECRETS["mdesc"], "-t", "First")
    root = project_dir / ".milestones"
    before = tree_digest(root)
    monkeypatch.setenv("MILESTONE_KEY", base64.b64encode(os.urandom(32)).decode())
    for args in (["show", "1"], ["task", "edit", "1/1", "-d", "x"], ["task", "done", "1/1"],
                 ["encrypt", "rotate"], ["encrypt", "off"]):
        r = enc(*args)
        assert r.exit_code == 4, (args, r.output)
        assert "not this project's" in r.output and len(r.output.strip().splitlines()) == 1
    assert tree_digest(root) == before
    monkeypatch.setenv("MILESTONE_KEY", "not a key")
    r = enc("show", "1")
    assert r.exit_code == 4 and "$MILESTONE_KEY is not a 256-bit key" in r.output


def test_a_flipped_ciphertext_byte_is_reported(enc: Runner, project_dir: Path) -> None:
    enc.ok("plan", "Alpha", "-d", SECRETS["mdesc"], "-t", "First")
    enc.ok("task", "add", "1", "Second", "-d", SECRETS["tdesc"])
    path = project_dir / ".milestones" / "active" / "milestone-001.yaml"
    text = path.read_text()
    start = text.index("enc:v1:", text.index("task-2"))
    body = start + text[start:].index(":", len("enc:v1:") + 17) + 1  # past the label
    at = body + 20
    flipped = "B" if text[at] != "B" else "C"
    path.write_text(text[:at] + flipped + text[at + 1:])
    r = _cli(project_dir, "show", "1", "--json")
    assert r.returncode == 0, r.stderr
    tasks = json.loads(r.stdout)["milestone"]["tasks"]
    assert tasks[1]["description"] == "[tampered]"
    assert tasks[0]["description"] == ""
    assert "milestone-001/task-2 description does not verify" in r.stderr
    assert json.loads(r.stdout)["milestone"]["description"] == SECRETS["mdesc"]
    # a label edited to another task's does not verify either (it is associated data)
    token = text[start:].split()[0].strip("'\"")
    relabelled = token.replace("task-2#", "task-1#")
    line = next(ln for ln in text.splitlines() if ln.endswith("id: task-1"))
    indent = " " * (len(line) - len(line.lstrip(" -")))
    path.write_text(text.replace(line + "\n", f"{line}\n{indent}description: {relabelled}\n", 1))
    r = _cli(project_dir, "show", "1/1", "--json")
    assert json.loads(r.stdout)["task"]["description"] == "[tampered]", r.stderr


def test_a_ciphertext_copied_to_another_field_is_refused(enc: Runner, project_dir: Path
                                                        ) -> None:
    enc.ok("plan", "Alpha", "-t", "First")
    enc.ok("task", "add", "1", "Second", "-d", SECRETS["tdesc"])
    path = project_dir / ".milestones" / "active" / "milestone-001.yaml"
    text = path.read_text()
    token = text[text.index("enc:v1:", text.index("task-2")):].split()[0].strip("'\"")
    assert "#description" in token
    line = next(ln for ln in text.splitlines() if ln.endswith("id: task-1"))
    indent = " " * (len(line) - len(line.lstrip(" -")))
    moved = text.replace(line + "\n", f"{line}\n{indent}description: {token}\n", 1)
    path.write_text(moved)
    before = tree_digest(project_dir / ".milestones")
    for args in (["show", "1/1", "--json"], ["task", "done", "1/1"]):
        r = _cli(project_dir, *args)
        assert r.returncode == 8, (r.stdout, r.stderr)
        assert ("the encrypted milestone-001/task-1 description holds the ciphertext of "
                "milestone-001/task-2 description") in r.stderr
        assert SECRETS["tdesc"] not in r.stdout + r.stderr
        assert tree_digest(project_dir / ".milestones") == before
    path.write_text(text)  # put back: everything works again
    assert enc.json("show", "1/2")["task"]["description"] == SECRETS["tdesc"]


def test_plain_text_typed_by_hand_is_sealed(enc: Runner, project_dir: Path) -> None:
    enc.ok("plan", "Alpha", "-d", "first words", "-t", "First")
    path = project_dir / ".milestones" / "active" / "milestone-001.yaml"
    lines = path.read_text().splitlines()
    lines = [f"description: {SECRETS['mdesc']}" if ln.startswith("description:") else ln
             for ln in lines]
    path.write_text("\n".join(lines) + "\n")
    assert enc.json("show", "1")["milestone"]["description"] == SECRETS["mdesc"]
    assert plaintext_leaks(project_dir / ".milestones") == []
    assert enc("doctor").exit_code == 0


def test_rotate_then_off(enc: Runner, project_dir: Path, monkeypatch: pytest.MonkeyPatch
                         ) -> None:
    root = project_dir / ".milestones"
    enc.ok("plan", "Alpha", "-d", SECRETS["mdesc"], "-t", "First", "--tag", "web")
    enc.ok("task", "block", "1/1", "-r", SECRETS["reason"])
    enc.ok("note", SECRETS["note"])
    old_key = (root / "config" / "encryption.key").read_text().strip()
    old_id = enc.json("encrypt", "status")["key_id"]
    head = enc.json("log")["events"][-1]
    out = enc.json("encrypt", "rotate")
    assert out["key_id"] != old_id
    assert out["previous_head"] == {"event_id": head["event_id"], "hash": head["hash"]}
    last = enc.json("log")["events"][-1]
    assert last["event_type"] == "encryption_changed"
    assert last["details"]["previous_head"]["hash"] == head["hash"]
    assert enc("doctor").exit_code == 0
    assert plaintext_leaks(root) == []
    text = "\n".join(p.read_text() for p in (root / "active").glob("*.yaml"))
    assert old_id not in text and out["key_id"] in text  # every token sealed anew
    assert enc.json("show", "1/1")["task"]["blockers"] == [SECRETS["reason"]]
    monkeypatch.setenv("MILESTONE_KEY", old_key)  # the old key opens nothing any more
    assert enc("show", "1").exit_code == 4
    monkeypatch.delenv("MILESTONE_KEY")
    off = enc.json("encrypt", "off")
    assert off["key_id"] is None
    assert not (root / "config" / "encryption.json").exists()
    assert not (root / "config" / "encryption.key").exists()
    assert SECRETS["mdesc"] in (root / "active" / "milestone-001.yaml").read_text()
    assert enc.json("show", "1")["milestone"]["description"] == SECRETS["mdesc"]
    assert enc("doctor").exit_code == 0
    assert not enc.json("encrypt", "status")["enabled"]


def _cli(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "milestones", "-C", str(cwd), *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COVERAGE_PROCESS_START": ""})


def _readable(cwd: Path) -> dict[str, Any]:
    r = _cli(cwd, "show", "1", "--json")
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout)["milestone"])


@pytest.mark.parametrize("backend", ["file", "database"])
def test_a_killed_rotate_loses_nothing(tmp_path: Path, backend: str) -> None:
    assert _cli(tmp_path, "init").returncode == 0
    if backend != "file":
        assert _cli(tmp_path, "storage", "migrate", "--to", backend).returncode == 0
    assert _cli(tmp_path, "encrypt", "init").returncode == 0
    assert _cli(tmp_path, "plan", "Alpha", "-d", SECRETS["mdesc"], "-t", "First",
                "-t", "Second").returncode == 0
    assert _cli(tmp_path, "task", "edit", "1/1", "-d", SECRETS["tdesc"]).returncode == 0
    assert _cli(tmp_path, "task", "block", "1/2", "-r", SECRETS["reason"]).returncode == 0
    root = tmp_path / ".milestones"
    began = time.monotonic()
    assert _cli(tmp_path, "encrypt", "rotate").returncode == 0
    took = time.monotonic() - began  # kills land anywhere from start-up to the swap's end
    rng = random.Random(15)
    ids = set()
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-m", "milestones", "-C", str(tmp_path),
                                 "encrypt", "rotate"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, took * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        m = _readable(tmp_path)  # old key or new, never a mix: the next command sees all
        assert m["description"] == SECRETS["mdesc"]
        assert m["tasks"][0]["description"] == SECRETS["tdesc"]
        assert m["tasks"][1]["blockers"] == [SECRETS["reason"]]
        ids.add(json.loads(_cli(tmp_path, "encrypt", "status", "--json").stdout)["key_id"])
        assert _cli(tmp_path, "doctor").returncode == 0
        assert not (root / ".restore").exists()
    assert _cli(tmp_path, "encrypt", "rotate").returncode == 0
    assert _readable(tmp_path)["description"] == SECRETS["mdesc"]
    assert plaintext_leaks(root, {k: SECRETS[k] for k in ("mdesc", "tdesc", "reason")}) == []


def test_an_agent_gets_the_plain_text(enc: Runner, project_dir: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    enc.ok("plan", "Alpha", "-d", SECRETS["mdesc"], "-t", "First")
    enc.ok("task", "edit", "1/1", "-d", SECRETS["tdesc"])
    r = _cli(project_dir, "agent", "register", "--name", "worker", "--json")
    monkeypatch.setenv("MILESTONE_AGENT_ID", json.loads(r.stdout)["agent"]["id"])
    got = json.loads(_cli(project_dir, "agent", "claim", "--json").stdout)
    assert got["task"]["description"] == SECRETS["tdesc"]
    assert SECRETS["tdesc"] in got["prompt"] and SECRETS["mdesc"] in got["prompt"]


def test_rotate_refuses_a_tampered_value_and_changes_nothing(enc: Runner,
                                                             project_dir: Path) -> None:
    enc.ok("plan", "Alpha", "-d", SECRETS["mdesc"], "-t", "First")
    root = project_dir / ".milestones"
    path = root / "active" / "milestone-001.yaml"
    text = path.read_text()
    at = text.index("enc:v1:") + len("enc:v1:") + 17 + len("milestone-001#description:") + 10
    path.write_text(text[:at] + ("B" if text[at] != "B" else "C") + text[at + 1:])
    enc("show", "1")  # the edit is recorded
    before = tree_digest(root)
    r = _cli(project_dir, "encrypt", "rotate")
    assert r.returncode == 8
    assert "milestone-001 description does not verify" in r.stderr
    assert tree_digest(root) == before and not (root / ".restore").exists()
