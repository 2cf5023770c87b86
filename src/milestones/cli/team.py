"""`milestone team ...`: who is on the team and with which role."""

from __future__ import annotations

from typing import Any

import click

from .group import cli, get_project, say

ROLE_CHOICE = click.Choice(["owner", "contributor", "viewer"])


@cli.group(name="team")
def team_group() -> None:
    """The team and its roles: owner (everything), contributor (all but delete and
    admin), viewer (read only).

    \b
    With no team the project is single-user and you are its owner. The first
    `team add` makes a team, and adds you as owner so nobody is locked out;
    then anyone not on it gets team.default_role (viewer unless set). Every
    change here needs an owner and is recorded as a team_changed event.

    \b
    Examples:
      milestone team add bob@example.com --role contributor
      milestone team role bob@example.com owner --milestone 3
      milestone team list --json
    """


def _text(data: dict[str, Any]) -> str:
    from ..ui import inert_data

    data = inert_data(data)
    if not data["enforced"]:
        listed = f" ({len(data['members'])} listed for scheduling)" if data["members"] else ""
        return (f"no team{listed}: roles are not checked, everyone is an owner "
                "(`milestone team add` makes a team)")
    lines = [f"{m['identity']:<32} {m['role']}" for m in data["members"]]
    lines.append(f"anyone else: {data['default_role']} (team.default_role)")
    for mid, over in sorted(data["milestones"].items()):
        for who, role in sorted(over.items()):
            lines.append(f"{mid}: {who} {role}")
    return "\n".join(lines)


@team_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def team_list(as_json: bool) -> None:
    """List the team: each member's role, the default role, per-milestone roles.

    \b
    Example:
      milestone team list --json
    """
    data = get_project().team_view()
    if as_json:
        from ..ui import jsontext

        click.echo(jsontext.dumps(data))
    else:
        click.echo(_text(data))


def _said(data: dict[str, Any], line: str, as_json: bool) -> None:
    if data.get("bootstrapped"):
        line = (f"{line} (the project had no team: {data['bootstrapped']} was added as "
                "owner, so it keeps one)")
    say(line, {"team": data}, as_json)


@team_group.command(name="add")
@click.argument("identity")
@click.option("--role", type=ROLE_CHOICE, default="contributor", show_default=True,
              help="The member's role.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def team_add(identity: str, role: str, as_json: bool) -> None:
    """Add IDENTITY (an email or user name, as MILESTONE_USER or git's user.email
    gives it) to the team with a role.

    \b
    Example:
      milestone team add bob@example.com --role contributor
    """
    data = get_project().team_add(identity, role)
    _said(data, f"{identity} is now {role}", as_json)


@team_group.command(name="remove")
@click.argument("identity")
@click.option("--milestone", "milestone", metavar="REF", default=None,
              help="Remove only IDENTITY's own role on milestone REF.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def team_remove(identity: str, milestone: str | None, as_json: bool) -> None:
    """Take IDENTITY off the team (the last owner stays).

    \b
    Examples:
      milestone team remove bob@example.com
      milestone team remove bob@example.com --milestone 3
    """
    data = get_project().team_remove(identity, milestone=milestone)
    where = f" on {data['milestone']}" if data.get("milestone") else ""
    _said(data, f"{identity} removed{where}", as_json)


@team_group.command(name="role")
@click.argument("identity")
@click.argument("role", type=ROLE_CHOICE)
@click.option("--milestone", "milestone", metavar="REF", default=None,
              help="Give IDENTITY this role on milestone REF only.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def team_role(identity: str, role: str, milestone: str | None, as_json: bool) -> None:
    """Change IDENTITY's role (on milestone REF with --milestone).

    \b
    Examples:
      milestone team role bob@example.com owner
      milestone team role vic@example.com contributor --milestone 3
    """
    data = get_project().team_set_role(identity, role, milestone=milestone)
    where = f" on {data['milestone']}" if data.get("milestone") else ""
    _said(data, f"{identity} is now {role}{where}", as_json)
