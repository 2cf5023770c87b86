"""Who may do what: the roles, the class of every ``Project`` operation, the check.

Roles (README, "Team and roles"): ``owner`` may do everything, ``contributor``
everything but delete and admin, ``viewer`` read only. Every public method of
``Project`` is classified in ``OPERATIONS`` (a unit test fails on a new method
without one); ``guard(Project)`` wraps each one that writes so it is checked
before it starts, and the write path (``UnitOfWork.transaction``) checks again,
per milestone touched, before anything commits: a write no operation declared
needs ``admin``. Reads are never checked: they resolve no identity and read no
team configuration.

With no team (no member with an access role and ``team.enforce_roles`` not true, or
``enforce_roles: false``) the tool is single-user: everyone is an owner and nothing
here reads more than the config.
A refusal is a ``PermissionDenied`` (exit 6) naming the identity, its role and
the role needed, and one ``access_denied`` line in ``logs/security-events.jsonl``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..errors import PermissionDenied

ROLES = ("viewer", "contributor", "owner")  # least to most
CLASSES = ("read", "create", "update", "delete", "admin")
ALLOWED: dict[str, frozenset[str]] = {
    "owner": frozenset(CLASSES),
    "contributor": frozenset({"read", "create", "update"}),
    "viewer": frozenset({"read"}),
}
# The least role an operation class needs.
NEEDED = {"read": "viewer", "create": "contributor", "update": "contributor",
          "delete": "owner", "admin": "owner"}
SECURITY_LOG = "logs/security-events.jsonl"

# Every public name of ``Project``: (class, what it does, for the refusal line).
OPERATIONS: dict[str, tuple[str, str]] = {
    # reads: never checked
    "actor": ("read", "naming the actor"),
    "another": ("read", "opening another handle"),
    "cache_stats": ("read", "reading cache statistics"),
    "config": ("read", "reading the configuration"),
    "current_id": ("read", "reading the current milestone"),
    "export_kiro": ("read", "exporting a Kiro spec"),
    "export_yaml": ("read", "exporting YAML"),
    "follow_backend": ("read", "following a backend switch"),
    "held_tasks": ("read", "listing held tasks"),
    "list_view": ("read", "listing milestones"),
    "log_view": ("read", "reading the log"),
    "milestone": ("read", "reading a milestone"),
    "milestones": ("read", "reading milestones"),
    "next_view": ("read", "listing ready tasks"),
    "open": ("read", "opening the project"),
    "pending_reviews": ("read", "listing pending reviews"),
    "reading": ("read", "reading"),
    "ready_index": ("read", "listing ready tasks"),
    "resume_view": ("read", "reading the resume record"),
    "role_of": ("read", "reading a role"),
    "scope": ("read", "reading"),
    "session_id": ("read", "naming the session"),
    "show_view": ("read", "showing"),
    "state": ("read", "reading the state"),
    "status_view": ("read", "reading the status"),
    "sync": ("read", "recording hand edits"),  # detection, attributed: not the caller's change
    "validate": ("read", "validating"),
    "wait_for_events": ("read", "following the log"),
    "view": ("read", "reading"),
    "require": ("read", "checking access"),
    "acting": ("read", "declaring an operation"),
    "check_write": ("read", "checking a write"),
    "require_no_higher": ("read", "checking a role"),
    "team_view": ("read", "listing the team"),
    "access_role": ("read", "reading a role"),
    # writes
    "init": ("create", "creating a project"),
    "plan": ("create", "planning a milestone"),
    "plan_many": ("create", "planning milestones"),
    "plan_from_template": ("create", "planning a milestone from a template"),
    "import_kiro": ("create", "importing a Kiro spec"),
    "add_task": ("create", "adding a task"),
    "note": ("create", "leaving a note"),
    "update": ("update", "editing a milestone"),
    "touch_and_check": ("update", "editing a milestone"),
    "set_current": ("update", "changing the current milestone"),
    "archive": ("update", "archiving a milestone"),
    "start_task": ("update", "starting a task"),
    # inside an agent's step (a claim on postgres: its row held, then the writer lock)
    "reserve_task": ("update", "claiming a task"),
    "writer_lock": ("update", "claiming a task"),
    "stop_task": ("update", "stopping a task"),
    "complete_task": ("update", "completing a task"),
    "block_task": ("update", "blocking a task"),
    "unblock_task": ("update", "unblocking a task"),
    "skip_task": ("update", "skipping a task"),
    "reopen_task": ("update", "reopening a task"),
    "set_progress": ("update", "setting a task's progress"),
    "assign_task": ("update", "assigning a task"),
    "edit_task": ("update", "editing a task"),
    "review": ("update", "reviewing a Kiro gate"),
    "reindex": ("update", "rebuilding the index"),
    "delete": ("delete", "deleting a milestone"),
    "team_add": ("admin", "changing the team"),
    "team_remove": ("admin", "changing the team"),
    "team_set_role": ("admin", "changing the team"),
    "transaction": ("admin", "writing outside a declared operation"),
    "crypt": ("read", "reading the encryption settings"),
    "reveal": ("read", "opening protected text"),
    "encrypt_status": ("read", "reading the encryption status"),
    "encrypt_init": ("admin", "turning encryption on"),
    "encrypt_rotate": ("admin", "changing encryption keys"),
    "encrypt_off": ("admin", "turning encryption off"),
}

# What the ops and agents declare (``Project.require``/``acting``): the refusal line.
DESCRIBED: dict[str, str] = {
    "storage.migrate": "migrating the storage backend",
    "storage.rollback": "rolling the storage backend back",
    "storage.cleanup": "removing the old backend's files",
    "restore": "restoring a backup",
    "doctor.repair": "repairing the project (`doctor --repair`)",
    "encrypt": "changing encryption keys",
    "agent": "working as an agent",
    "agent.identity": "registering an agent to work as someone with a higher role",
    "git.link": "linking commits to tasks",
}


def describe(operation: str) -> str:
    if operation in OPERATIONS:
        return OPERATIONS[operation][1]
    head = operation.split(" ")[0]
    return DESCRIBED.get(head) or DESCRIBED.get(head.split(".")[0]) or operation


# ------------------------------------------------------------------ the team

class Team:
    """``team:`` of config.yaml as the check reads it. (A plain class: a dataclass
    would cost every command's start-up its making.)"""

    def __init__(self, enforced: bool = False, default_role: str = "viewer") -> None:
        self.enforced = enforced
        self.default_role = default_role
        self.members: dict[str, str] = {}  # casefolded identity -> role
        self.milestones: dict[str, dict[str, str]] = {}  # milestone id -> the same

    def role(self, identity: str, milestone: str | None = None) -> tuple[str, bool]:
        """(role, on the team) of ``identity``, on ``milestone`` when it has overrides."""
        who = identity.casefold()
        if milestone is not None:
            over = self.milestones.get(milestone, {})
            if who in over:
                return over[who], True
        if who in self.members:
            return self.members[who], True
        return self.default_role, False

    def best(self, identity: str) -> str:
        """The highest role ``identity`` has anywhere (globally or on one milestone)."""
        who = identity.casefold()
        found = [self.role(identity)[0], *(o[who] for o in self.milestones.values() if who in o)]
        return max(found, key=ROLES.index)


def access_role_name(value: Any) -> str:
    """A member's role as access reads it: owner, contributor or viewer; anything
    else (a role named only for Kiro gates, or none) is a contributor."""
    return str(value) if value in ROLES else "contributor"


def member_names(member: Mapping[str, Any]) -> set[str]:
    names = {str(member[k]) for k in ("name", "email", "id") if member.get(k)}
    return names | {str(a) for a in member.get("aliases") or []}


def team_of(config: Mapping[str, Any]) -> Team:
    """The team the check applies: enforced once a team exists, that is when
    ``team.enforce_roles`` is true, or unset and a member has an access role (owner,
    contributor, viewer). Members listed only for capacity or Kiro gates make no team
    by themselves; ``enforce_roles: false`` switches the check off."""
    raw = config.get("team") or {}
    if not isinstance(raw, Mapping):
        return Team()
    members = raw.get("members") or []
    enforce = raw.get("enforce_roles")
    if enforce is None:
        enforce = isinstance(members, list) and any(
            isinstance(m, Mapping) and m.get("role") in ROLES for m in members)
    if enforce is not True:
        return Team()
    default = raw.get("default_role")
    team = Team(enforced=True, default_role=default if default in ROLES else "viewer")
    for m in members if isinstance(members, list) else []:
        if isinstance(m, Mapping):
            role = access_role_name(m.get("role"))
            for name in member_names(m):
                team.members.setdefault(name.casefold(), role)
    for mid, over in (raw.get("milestones") or {}).items():
        if isinstance(over, Mapping):
            team.milestones[str(mid)] = {str(k).casefold(): str(v) for k, v in over.items()
                                         if v in ROLES}
    return team


# ------------------------------------------------------------------ the dashboard's token

DASHBOARD_TOKEN = "config/dashboard-token.sha256"  # the access token's SHA-256 (web door)


def keep_token_hash(root: Any, digest: str) -> None:
    """Store the dashboard's access-token hash (mode 0600), written as every file of
    the project is: a temp of its own, no link followed (``storage.fsutil``)."""
    from ..storage import fsutil

    path = root / DASHBOARD_TOKEN
    fsutil.refuse_links(path.parent, last=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write(path, (digest + "\n").encode("ascii"), mode=0o600)


def token_hash(root: Any) -> str | None:
    """The stored access-token hash, None when there is none (or it is unreadable)."""
    from ..errors import MilestoneError
    from ..storage import fsutil

    try:
        data = fsutil.read_existing(root / DASHBOARD_TOKEN)
    except (OSError, MilestoneError):
        return None
    return (data or b"").decode("ascii", "replace").strip() or None


# ------------------------------------------------------------------ refusing

def record_denial(root: Any, actor: str, role: str, needed: str, operation: str,
                  target: str | None) -> None:
    """One ``access_denied`` line in logs/security-events.jsonl (appended, no link
    followed). A record that cannot be written does not hide the refusal."""
    import json

    from ..storage import fsutil

    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = json.dumps({"ts": stamp, "type": "access_denied", "actor": actor, "role": role,
                       "needed": needed, "operation": operation, "target": target},
                      ensure_ascii=False) + "\n"
    path = root / SECURITY_LOG
    try:
        fsutil.refuse_links(path.parent, last=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        fsutil.append_durable(path, line.encode("utf-8"))
    except Exception:  # the refusal stands whatever happens to its record
        import sys

        print(f"milestone: warning: the access_denied record was not written to "
              f"{SECURITY_LOG}", file=sys.stderr, flush=True)


def denied(root: Any, identity: str, role: str, known: bool, needs: str, operation: str,
           target: str | None) -> PermissionDenied:
    """Record the refusal and return its error (the caller raises it)."""
    record_denial(root, identity, role, needs, operation, target)
    needed = NEEDED[needs]
    who = (f"{identity} is a {role}" if known
           else f"{identity} is not on the team (a {role} by team.default_role)")
    on = f" ({target})" if target else ""
    fix = (f"ask an owner: milestone team role {identity} {needed}" if known
           else f"ask an owner: milestone team add {identity} --role {needed}")
    return PermissionDenied(f"{who}; {describe(operation)}{on} needs {needed}", hint=fix)


def allows(role: str, needs: str) -> bool:
    return needs in ALLOWED.get(role, frozenset())


def check(root: Any, team: Team, identity: str, needs: str, operation: str,
          milestones: Iterable[str] = (), *, best: bool = False,
          ref: str | None = None) -> None:
    """Refuse (recorded) unless ``identity`` may do ``needs`` on every milestone in
    ``milestones`` (none: the project). ``best``: the up-front check before the
    milestones are known: the highest role the identity has anywhere."""
    if needs == "read" or not team.enforced:
        return
    if best:
        role, known = team.best(identity), team.role(identity)[1] or any(
            identity.casefold() in o for o in team.milestones.values())
        if not allows(role, needs):
            raise denied(root, identity, team.role(identity)[0], known, needs, operation,
                         ref)
        return
    where: list[str | None] = [*sorted(set(milestones))] or [None]
    for mid in where:
        role, known = team.role(identity, mid)
        if not allows(role, needs):
            raise denied(root, identity, role, known, needs, operation, mid or ref)


def require_at(root: Any, needs: str, *, operation: str, actor: str,
               target: str | None = None) -> None:
    """``Project.require`` for the ops that work on a project they do not open
    (``restore`` on damaged data, ``storage migrate``): the team from config.yaml.
    A config.yaml that cannot be read checks nothing (a warning): it must not stop
    the restore that would mend it, and whoever broke it could edit it anyway."""
    from ..errors import MilestoneError
    from ..storage.config import load_config

    if needs == "read":
        return
    try:
        config = load_config(root)
    except MilestoneError as exc:
        import sys

        print(f"milestone: warning: roles not checked: {exc}", file=sys.stderr, flush=True)
        return
    check(root, team_of(config), actor, needs, operation, [target] if target else [],
          ref=target)


# ------------------------------------------------------------------ the guard

# The write path itself: checked inside (``check_write``), never wrapped.
UNWRAPPED = frozenset({"transaction"})


def guarded(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    needs = OPERATIONS[name][0]
    code = fn.__code__  # (inspect would cost every command its import)
    by_ref = code.co_argcount > 1 and code.co_varnames[1] == "ref"  # the target, for the refusal

    @functools.wraps(fn)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        target = (args[0] if args else kwargs.get("ref")) if by_ref else None
        with self.acting(name, needs, target=target if isinstance(target, str) else None):
            return fn(self, *args, **kwargs)

    run.access = needs  # type: ignore[attr-defined]
    return run


def guard(cls: type) -> type:
    """Wrap every classified write of ``cls`` (plain methods; not the class methods,
    which make a project before there is a team to ask)."""
    for name, (needs, _what) in OPERATIONS.items():
        if needs == "read" or name in UNWRAPPED:
            continue
        for owner in cls.__mro__:
            fn = owner.__dict__.get(name)
            if fn is not None:
                break
        if callable(fn) and not isinstance(fn, (classmethod, staticmethod)):
            setattr(cls, name, guarded(name, fn))
    return cls
