"""The team and its roles: ``milestone team list|add|remove|role``.

The team lives in ``config/config.yaml`` (``team.members``, ``team.default_role``,
``team.enforce_roles``, ``team.milestones`` for per-milestone roles; see
``access``). Every change is an owner-only (admin) operation, made under the
writer lock and recorded as a ``team_changed`` event; the last owner is never
removed or demoted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidInput, NotFound, ValidationFailed
from ..model import refs
from . import access
from .constants import SCHEMA
from .views import Views


def _identity(value: str) -> str:
    who = (value or "").strip()
    if not who or len(who) > 200 or any(ch.isspace() or ord(ch) < 32 for ch in who):
        raise InvalidInput(f"identity {value!r} is not usable",
                           hint="give an email or a user name without spaces, e.g. "
                                "bob@example.com")
    return who


def _role(value: str) -> str:
    if value not in access.ROLES:
        raise InvalidInput(f"unknown role {value!r}",
                           hint=f"use one of: {', '.join(reversed(access.ROLES))}")
    return value


def _find(members: Any, who: str) -> Any:
    folded = who.casefold()
    for m in members:
        if isinstance(m, Mapping) and folded in {n.casefold() for n in access.member_names(m)}:
            return m
    return None


def _owners(section: Mapping[str, Any]) -> int:
    return sum(1 for m in section.get("members") or []
               if isinstance(m, Mapping) and m.get("role") == "owner")


class TeamOps(Views):
    """The team: list it, add, remove and change the role of a member."""

    def team_view(self) -> dict[str, Any]:
        """The team as config.yaml has it, each member with the role access reads."""
        config = self.config()
        section = config.get("team") or {}
        team = access.team_of(config)
        rows = []
        for m in section.get("members") or []:
            if not isinstance(m, Mapping):
                continue
            names = sorted(access.member_names(m))
            if not names:
                continue
            primary = str(m.get("email") or m.get("name") or m.get("id") or names[0])
            rows.append({"identity": primary, "aliases": [n for n in names if n != primary],
                         "role": access.access_role_name(m.get("role"))
                         if team.enforced else "owner",
                         "configured_role": m.get("role")})
        milestones = {str(k): dict(v) for k, v in (section.get("milestones") or {}).items()
                      if isinstance(v, Mapping)}
        return {"schema": SCHEMA, "enforced": team.enforced,
                "default_role": team.default_role if team.enforced else "owner",
                "members": rows, "milestones": milestones}

    def team_add(self, identity: str, role: str = "contributor") -> dict[str, Any]:
        """Add ``identity`` with ``role`` (or change the role of one already listed).
        The first change of a project without a team makes it one: the person
        running it is added as owner (``bootstrapped`` names them)."""
        return self._team_change("add", _identity(identity), _role(role))

    def team_set_role(self, identity: str, role: str, *, milestone: str | None = None
                      ) -> dict[str, Any]:
        """Change a member's role, or with ``milestone`` their role on that milestone."""
        return self._team_change("role", _identity(identity), _role(role), milestone=milestone)

    def team_remove(self, identity: str, *, milestone: str | None = None) -> dict[str, Any]:
        """Take ``identity`` off the team (or off ``milestone``'s overrides)."""
        return self._team_change("remove", _identity(identity), None, milestone=milestone)

    def _team_change(self, action: str, who: str, role: str | None, *,
                     milestone: str | None = None) -> dict[str, Any]:
        from ..storage.config import edit_team

        with self.transaction() as tx:
            mid = refs.resolve_milestone(milestone, tx.snaps) if milestone else None
            self._config = None  # read under the lock
            enforced = access.team_of(self.config()).enforced
            me = self.actor
            result: dict[str, Any] = {"action": action, "identity": who, "role": role,
                                      "milestone": mid, "bootstrapped": None}

            def change(section: Any) -> dict[str, Any]:
                members = section.get("members")
                if not isinstance(members, list):
                    section["members"] = members = []
                if mid is not None:
                    return self._override(section, action, who, role, mid)
                before = _find(members, who)
                previous = before.get("role") if before is not None else None
                if action == "remove":
                    if before is None:
                        raise NotFound(f"{who} is not on the team",
                                       hint="`milestone team list` shows who is")
                    members.remove(before)
                elif before is None:
                    if action == "role":
                        raise NotFound(f"{who} is not on the team",
                                       hint=f"add them: milestone team add {who} --role {role}")
                    members.append({"name": who, "role": role})
                else:
                    before["role"] = role
                if not enforced:  # the first change: a team now, its maker an owner
                    section["enforce_roles"] = True
                    mine = _find(members, me)
                    if mine is None and action != "remove":
                        members.insert(0, {"name": me, "role": "owner"})
                        result["bootstrapped"] = me
                    elif mine is not None and mine.get("role") != "owner" and not (
                            action == "remove" and mine is before):
                        mine["role"] = "owner"
                        result["bootstrapped"] = me
                if _owners(section) == 0:
                    verb = "remove" if action == "remove" else "demote"
                    raise ValidationFailed(
                        f"cannot {verb} {who}: they are the team's last owner",
                        hint=f"make someone else owner first: milestone team role IDENTITY "
                             f"owner, then {verb} {who}")
                return {"previous": previous}

            # The check before anything is written (the write path checks again).
            tx.record("team_changed", None, None, action=action, identity=who, role=role,
                      on=mid)
            self.check_write(tx)
            got = edit_team(self.root, change)
            tx.events[-1]["details"].update(
                {k: v for k, v in {"previous": got.get("previous"),
                                   "bootstrapped": result["bootstrapped"]}.items()
                 if v is not None})
            result["previous"] = got.get("previous")
        self._config = None
        return result

    @staticmethod
    def _override(section: Any, action: str, who: str, role: str | None,
                  mid: str) -> dict[str, Any]:
        overrides = section.get("milestones")
        if not isinstance(overrides, dict):
            section["milestones"] = overrides = {}
        mine = overrides.get(mid)
        if not isinstance(mine, dict):
            overrides[mid] = mine = {}
        key = next((k for k in mine if str(k).casefold() == who.casefold()), None)
        previous = mine.get(key) if key is not None else None
        if action == "remove":
            if key is None:
                raise NotFound(f"{who} has no role of their own on {mid}",
                               hint="`milestone team list` shows the overrides")
            del mine[key]
            if not mine:
                del overrides[mid]
        else:
            mine[key if key is not None else who] = role
        return {"previous": previous}
