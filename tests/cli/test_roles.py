"""Roles: every command that changes data, and some reads, by every role.

One project is built once (a team of ann the owner, bob a contributor, vic a
viewer; eve is on no team and gets team.default_role, viewer) and copied for each
case. Allowed: exit 0. Refused: exit 6, one line naming the identity, its role and
the role needed, every file under .milestones/ byte-identical (the per-command
metrics aside), and one ``access_denied`` line appended to
logs/security-events.jsonl.
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from milestones.cli import cli
from milestones.project import Project
from milestones.project.access import NEEDED, OPERATIONS

KIRO = Path(__file__).resolve().parents[1] / "fixtures" / "kiro" / "offline-sync"
SECURITY = Path(".milestones/logs/security-events.jsonl")
IDS = {"owner": "ann@example.com", "contributor": "bob@example.com",
       "viewer": "vic@example.com", "unknown": "eve@example.com"}
RANK = {"read": 0, "create": 1, "update": 1, "delete": 2, "admin": 2}
LEVEL = {"owner": 2, "contributor": 1, "viewer": 0, "unknown": 0}

# (class, argv): every command that changes data, then representative reads.
COMMANDS: list[tuple[str, tuple[str, ...]]] = [
    ("create", ("plan", "New milestone", "--task", "One")),
    ("create", ("plan", "--from-file", "{dir}/plan.yaml")),
    ("create", ("plan", "--template", "bugfix", "--var", "bug=Crash")),
    ("create", ("quickstart", "--yes", "--template", "bugfix", "--var", "bug=Crash",
                "--title", "Fix")),
    ("create", ("task", "add", "1", "Extra")),
    ("create", ("note", "a note")),
    ("create", ("import", "kiro", "{dir}/.kiro/specs/second")),
    ("update", ("update", "1", "--title", "Renamed")),
    ("update", ("current", "2")),
    ("update", ("archive", "3")),
    ("update", ("task", "start", "1/1")),
    ("update", ("task", "stop", "1/2")),
    ("update", ("task", "done", "1/1")),
    ("update", ("task", "block", "1/1", "--reason", "waiting")),
    ("update", ("task", "unblock", "1/3")),
    ("update", ("task", "skip", "1/1")),
    ("update", ("task", "reopen", "2/1")),
    ("update", ("task", "progress", "1/2", "50")),
    ("update", ("task", "assign", "1/1", "bob@example.com")),
    ("update", ("task", "edit", "1/1", "--title", "Edited")),
    ("update", ("review", "4", "--approve", "requirements")),
    ("update", ("agent", "register", "--name", "w1")),
    ("update", ("agent", "claim", "--agent", "worker")),
    ("update", ("agent", "send", "--agent", "worker", "--to", "*", "hello")),
    ("delete", ("delete", "2", "--yes", "--force")),
    ("admin", ("team", "add", "new@example.com", "--role", "viewer")),
    ("admin", ("team", "role", "bob@example.com", "viewer")),
    ("admin", ("team", "role", "vic@example.com", "owner", "--milestone", "1")),
    ("admin", ("team", "remove", "vic@example.com")),
    ("admin", ("storage", "migrate", "--to", "hybrid")),
    ("admin", ("restore", "{dir}/backup.tar.gz", "--yes")),
    ("admin", ("doctor", "--repair")),
    ("admin", ("encrypt", "init")),
    ("read", ("status",)),
    ("read", ("list", "--all")),
    ("read", ("show", "1/1")),
    ("read", ("next",)),
    ("read", ("log",)),
    ("read", ("resume",)),
    ("read", ("team", "list", "--json")),
    ("read", ("doctor",)),
    ("read", ("review", "--pending")),
    ("read", ("agent", "list")),
    ("read", ("storage", "migrate", "--to", "hybrid", "--dry-run")),
    ("read", ("encrypt", "status")),
    ("read", ("audit",)),
]

CONFIG_EXTRA = "kiro:\n  approvers:\n    requirements: [owner, contributor]\n"


def invoke(cwd: Path, who: str, *args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(
        cli, ["-C", str(cwd), *args], env={"MILESTONE_USER": who}, catch_exceptions=False)


def ok(cwd: Path, who: str, *args: str) -> Result:
    result = invoke(cwd, who, *args)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return result


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The team's project, built once."""
    d = tmp_path_factory.mktemp("roles") / "p"
    d.mkdir()
    owner = IDS["owner"]
    for name in ("offline-sync", "second"):
        shutil.copytree(KIRO, d / ".kiro" / "specs" / name)
    ok(d, owner, "init")
    config = d / ".milestones" / "config" / "config.yaml"
    config.write_text(config.read_text() + CONFIG_EXTRA)  # read on import: first
    ok(d, owner, "plan", "Alpha", "--task", "A", "--task", "B", "--task", "C")
    ok(d, owner, "plan", "Beta", "--task", "D")
    ok(d, owner, "plan", "Gamma", "--task", "E")
    ok(d, owner, "task", "start", "1/2")
    ok(d, owner, "task", "block", "1/3", "--reason", "vendor")
    ok(d, owner, "task", "done", "2/1")
    ok(d, owner, "task", "done", "3/1")
    ok(d, owner, "import", "kiro", str(d / ".kiro" / "specs" / "offline-sync"))
    ok(d, owner, "agent", "register", "--name", "worker")
    ok(d, owner, "backup", "--to", str(d / "backup.tar.gz"))
    (d / "plan.yaml").write_text("title: From a file\ntasks:\n- title: one\n")
    first = ok(d, owner, "team", "add", IDS["contributor"], "--role", "contributor")
    assert f"{owner} was added as owner" in first.stdout
    ok(d, owner, "team", "add", IDS["viewer"], "--role", "viewer")
    return d


def snapshot(root: Path) -> dict[str, Any]:
    """Every path under .milestones/ -> (mode, bytes): the metrics and the security
    log aside."""
    out: dict[str, Any] = {}
    for path in sorted((root / ".milestones").rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".milestones/performance") or rel == SECURITY.as_posix():
            continue
        st = path.lstat()
        out[rel] = (st.st_mode, path.read_bytes() if stat.S_ISREG(st.st_mode) else None)
    return out


def security_lines(root: Path) -> list[dict[str, Any]]:
    path = root / SECURITY
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("role", list(IDS))
@pytest.mark.parametrize(("needs", "argv"), COMMANDS,
                         ids=[" ".join(a) for _, a in COMMANDS])
def test_every_command_by_every_role(template: Path, tmp_path: Path, role: str, needs: str,
                                     argv: tuple[str, ...]) -> None:
    d = tmp_path / "p"
    shutil.copytree(template, d, symlinks=True)
    args = [a.replace("{dir}", str(d)) for a in argv]
    who = IDS[role]
    before, records = snapshot(d), security_lines(d)
    result = invoke(d, who, *args)
    allowed = LEVEL[role] >= RANK[needs]
    if allowed:
        assert result.exit_code == 0, (result.stdout, result.stderr)
        assert security_lines(d) == records
        return
    assert result.exit_code == 6, (result.stdout, result.stderr)
    err = result.stderr
    assert err.count("\n") == 1 and err.startswith("milestone: error: "), err
    shown = "viewer" if role == "unknown" else role
    assert f"{who} is " in err and shown in err and f"needs {NEEDED[needs]}" in err, err
    assert snapshot(d) == before, "a refused command changed data"
    new = security_lines(d)[len(records):]
    assert len(new) == 1, new
    assert new[0]["type"] == "access_denied" and new[0]["actor"] == who
    assert new[0]["role"] == shown and new[0]["needed"] == needs
    assert new[0]["ts"].endswith("Z") and new[0]["operation"]


# ------------------------------------------------------------------ the rest


def test_every_public_project_method_is_classified() -> None:
    """A new public operation of the service layer without an access class fails here:
    add it to access.OPERATIONS (read, create, update, delete or admin)."""
    public = {n for n in dir(Project) if not n.startswith("_")}
    assert public - set(OPERATIONS) == set()
    assert set(OPERATIONS) - public == set()
    for name, (needs, _what) in OPERATIONS.items():
        attr = getattr(Project, name)
        wrapped = getattr(attr, "access", None)
        plain = needs == "read" or name == "transaction" or isinstance(
            Project.__dict__.get(name), classmethod) or name in ("init", "open")
        assert wrapped == (None if plain else needs), name


def test_no_team_means_the_local_user_is_owner(tmp_path: Path) -> None:
    ok(tmp_path, "someone", "init")
    ok(tmp_path, "someone", "plan", "A", "--task", "x")
    ok(tmp_path, "anyone-else", "delete", "1", "--yes")
    ok(tmp_path, "anyone-else", "doctor", "--repair")
    assert not (tmp_path / SECURITY).exists()
    assert invoke(tmp_path, "x", "team", "list").stdout.startswith("no team")


@pytest.mark.parametrize(("team", "enforced"), [
    ("members: [{name: ann, role: owner}]", True),  # a team written by hand
    ("members: [{name: ann, role: owner}]\n  enforce_roles: false", False),
    ("members: [{name: ann, capacity: 30}]", False),  # listed for capacity only
    ("members: [{name: ann, capacity: 30}]\n  enforce_roles: true", True),
])
def test_a_team_with_roles_is_enforced_once_it_exists(tmp_path: Path, team: str,
                                                     enforced: bool) -> None:
    ok(tmp_path, "ann", "init")
    ok(tmp_path, "ann", "plan", "A", "--task", "x")
    config = tmp_path / ".milestones/config/config.yaml"
    text = config.read_text()
    assert "team:\n  members: []\n" in text
    config.write_text(text.replace("team:\n  members: []\n", f"team:\n  {team}\n"))
    before = snapshot(tmp_path)
    result = invoke(tmp_path, "stranger@example.com", "task", "done", "1/1")
    if enforced:
        assert result.exit_code == 6, result.output
        assert "stranger@example.com is not on the team" in result.stderr
        assert snapshot(tmp_path) == before
        assert security_lines(tmp_path)[-1]["actor"] == "stranger@example.com"
    else:
        assert result.exit_code == 0, result.output
    ok(tmp_path, "ann", "task", "reopen", "1/1") if not enforced else ok(
        tmp_path, "ann", "task", "done", "1/1")


def test_the_first_team_add_keeps_its_maker_owner(tmp_path: Path) -> None:
    ok(tmp_path, "ann", "init")
    result = ok(tmp_path, "ann", "team", "add", "bob", "--role", "viewer", "--json")
    assert json.loads(result.stdout)["team"]["bootstrapped"] == "ann"
    team = json.loads(ok(tmp_path, "ann", "team", "list", "--json").stdout)
    assert team["enforced"] and team["default_role"] == "viewer"
    assert {m["identity"]: m["role"] for m in team["members"]} == {"ann": "owner",
                                                                  "bob": "viewer"}
    ok(tmp_path, "ann", "plan", "A", "--task", "x")
    events = [json.loads(x) for x in
              (tmp_path / ".milestones/logs/progress-events.jsonl").read_text().splitlines()]
    changed = [e for e in events if e["event_type"] == "team_changed"]
    assert changed[0]["details"]["identity"] == "bob"
    assert changed[0]["details"]["bootstrapped"] == "ann" and changed[0]["actor"] == "ann"


def test_the_last_owner_is_never_removed_or_demoted(tmp_path: Path) -> None:
    ok(tmp_path, "ann", "init")
    ok(tmp_path, "ann", "team", "add", "bob", "--role", "contributor")
    config = tmp_path / ".milestones/config/config.yaml"
    before = config.read_bytes()
    for args in (("team", "remove", "ann"), ("team", "role", "ann", "viewer")):
        result = invoke(tmp_path, "ann", *args)
        assert result.exit_code == 5 and "last owner" in result.stderr, result.stderr
        assert config.read_bytes() == before
    ok(tmp_path, "ann", "team", "role", "bob", "owner")
    ok(tmp_path, "bob", "team", "remove", "ann")
    assert invoke(tmp_path, "ann", "note", "x").exit_code == 6  # now a viewer by default


def test_a_per_milestone_role(tmp_path: Path) -> None:
    ok(tmp_path, "ann", "init")
    ok(tmp_path, "ann", "plan", "A", "--task", "x")
    ok(tmp_path, "ann", "plan", "B", "--task", "y")
    ok(tmp_path, "ann", "team", "add", "vic", "--role", "viewer")
    ok(tmp_path, "ann", "team", "role", "vic", "owner", "--milestone", "2")
    ok(tmp_path, "vic", "task", "done", "2/1")
    refused = invoke(tmp_path, "vic", "task", "done", "1/1")
    assert refused.exit_code == 6 and "vic is a viewer" in refused.stderr
    assert security_lines(tmp_path)[-1]["target"] == "milestone-001"
    ok(tmp_path, "vic", "delete", "2", "--yes")
    cfg = (tmp_path / ".milestones/config/config.yaml").read_text()
    assert "milestone-002" in cfg and "vic: owner" in cfg


def test_agents_act_under_their_registering_identity(tmp_path: Path) -> None:
    ok(tmp_path, "ann", "init")
    ok(tmp_path, "ann", "plan", "A", "--task", "x", "--task", "y")
    ok(tmp_path, "ann", "team", "add", "bob", "--role", "contributor")
    ok(tmp_path, "ann", "team", "add", "vic", "--role", "viewer")
    entry = json.loads(ok(tmp_path, "bob", "agent", "register", "--name", "w",
                          "--json").stdout)["agent"]
    assert entry["identity"] == "bob"
    ok(tmp_path, "bob", "agent", "claim", "--agent", "w")
    # An agent registered as the viewer works with the viewer's role, whoever runs it.
    ok(tmp_path, "ann", "agent", "register", "--name", "v", "--identity", "vic")
    refused = invoke(tmp_path, "ann", "agent", "claim", "--agent", "v")
    assert refused.exit_code == 6 and "vic is a viewer" in refused.stderr
    assert security_lines(tmp_path)[-1]["actor"] == "vic"
    # Nobody registers an agent to work with a role above their own.
    refused = invoke(tmp_path, "bob", "agent", "register", "--name", "o", "--identity", "ann")
    assert refused.exit_code == 6, refused.stderr


def test_project_require_is_the_check_other_doors_call(tmp_path: Path) -> None:
    from milestones.errors import PermissionDenied

    ok(tmp_path, "ann", "init")
    ok(tmp_path, "ann", "team", "add", "bob", "--role", "contributor")
    bob = Project.open(tmp_path, actor="bob", session_id="s")
    bob.require("update", operation="encrypt rotate")  # a contributor may update
    with pytest.raises(PermissionDenied, match="bob is a contributor; changing encryption"):
        bob.require("admin", operation="encrypt rotate")
    Project.open(tmp_path, actor="ann", session_id="s").require("admin", operation="encrypt")
    assert security_lines(tmp_path)[-1]["operation"] == "encrypt rotate"


def test_a_write_outside_any_operation_needs_admin(tmp_path: Path) -> None:
    from milestones.errors import PermissionDenied

    ok(tmp_path, "ann", "init")
    ok(tmp_path, "ann", "plan", "A", "--task", "x")
    ok(tmp_path, "ann", "team", "add", "bob", "--role", "contributor")
    bob = Project.open(tmp_path, actor="bob", session_id="s")
    with pytest.raises(PermissionDenied, match="writing outside a declared operation"), \
            bob.transaction() as tx:
        tx.record("note_added", None, None, mid=None, data={"note": "raw"})
    assert "raw" not in (tmp_path / ".milestones/logs/progress-events.jsonl").read_text()


@pytest.mark.parametrize(("text", "words"), [
    ("team:\n  enforce_roles: yes please\n", ["team.enforce_roles", "true or false"]),
    ("team:\n  default_role: admin\n", ["team.default_role", "owner, contributor, viewer"]),
    ("team:\n  milestones:\n    three: {bob: owner}\n", ["team.milestones", "milestone-003"]),
    ("team:\n  milestones:\n    milestone-003: {bob: boss}\n", ["milestone-003.bob"]),
    ("team:\n  enforce_role: true\n", ["unknown key team.enforce_role",
                                       "did you mean enforce_roles?"]),
])
def test_the_config_checker_knows_the_team_keys(tmp_path: Path, text: str,
                                                words: list[str]) -> None:
    ok(tmp_path, "ann", "init")
    (tmp_path / ".milestones/config/config.yaml").write_text(text)
    result = ok(tmp_path, "ann", "status")
    for w in words:
        assert w in result.stderr, result.stderr


def test_execute_by_a_viewer_is_refused_before_it_starts(tmp_path: Path) -> None:
    ok(tmp_path, "ann", "init")
    ok(tmp_path, "ann", "plan", "A", "--task", "x")
    ok(tmp_path, "ann", "team", "add", "vic", "--role", "viewer")
    before = snapshot(tmp_path)
    result = invoke(tmp_path, "vic", "execute", "1", "--agents", "1", "--command", "true")
    assert result.exit_code == 6 and "vic is a viewer" in result.stderr, result.stderr
    assert snapshot(tmp_path) == before


def test_restore_refuses_before_it_asks(template: Path, tmp_path: Path) -> None:
    d = tmp_path / "p"
    shutil.copytree(template, d, symlinks=True)
    before = snapshot(d)
    result = invoke(d, IDS["viewer"], "restore", str(d / "backup.tar.gz"))  # no --yes
    assert result.exit_code == 6, result.stderr
    assert "Restore " not in result.stderr  # refused without a question
    assert snapshot(d) == before
    assert [r["operation"] for r in security_lines(d)][-1:] == ["restore"]
