"""Template commands: template list, template show, quickstart."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidInput
from ..project import PRIORITIES
from ..ui import plural
from .group import State, cli, emit, output_options, say
from .options import date_arg, json_flag, parse_vars


def _root() -> Path | None:
    """The project's .milestones directory if there is one (templates work without)."""
    from ..project import find_root

    state = click.get_current_context().find_object(State)
    try:
        return find_root(state.directory if state else None)
    except InvalidInput:
        return None
    except Exception:  # NotFound: no project yet; built-in and user templates still work
        return None


@cli.group()
def template() -> None:
    """Built-in and your own milestone templates (.milestones/templates/*.yaml).

    \b
    Examples:
      milestone template list
      milestone template show api
      milestone plan --template bugfix --var bug="Login loop" --start today
    """


@template.command("list")
@output_options
def template_list(as_json: bool, ui: str | None) -> None:
    """List the templates: built-in, then user and project ones (which override).

    \b
    Example:
      milestone template list --json
    """
    from ..project import list_templates

    data = {"schema": 1, "templates": [t.to_dict() for t in list_templates(_root())]}
    emit(data, "templates", as_json, ui)


@template.command("show")
@click.argument("name")
@output_options
def template_show(name: str, as_json: bool, ui: str | None) -> None:
    """Show a template: phases, tasks, variables and what it requires.

    \b
    Example:
      milestone template show release
    """
    from ..project import get_template

    emit({"schema": 1, "template": get_template(_root(), name).to_dict()}, "template", as_json,
         ui)


@cli.command()
@click.option("--template", "-T", "name", help="Template to use (default: the one detected).")
@click.option("--title", help="Milestone title.")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="A template variable (repeatable).")
@click.option("--start", help="Start date (default today).")
@click.option("--priority", type=click.Choice(PRIORITIES))
@click.option("--owner")
@click.option("--yes", "-y", is_flag=True, help="Accept the proposal; ask nothing.")
@json_flag
def quickstart(name: str | None, title: str | None, variables: tuple[str, ...],
               start: str | None, priority: str | None, owner: str | None, yes: bool,
               as_json: bool) -> None:
    """Detect the project type, propose a template, and create the first milestone.

    It asks only what it must, and every answer is also a flag, so agents and
    scripts run it with no terminal (`--yes`). It initialises .milestones/ if needed.

    \b
    Examples:
      milestone quickstart
      milestone quickstart --yes --template api --title "Payments API" --var service=payments
    """
    from ..project import Project, detect_project, get_template

    if not yes and not sys.stdin.isatty():  # nobody to answer: create nothing unasked
        raise click.UsageError("quickstart asks before it creates anything, and standard input "
                               "is not a terminal: pass --yes to accept its proposal (with "
                               "--template, --title, --var as needed)")
    state = click.get_current_context().find_object(State)
    base = (state.directory if state and state.directory else Path.cwd()).resolve()
    root = _root()
    repo = root.parent if root is not None else base
    found = detect_project(repo)
    interactive = not yes and sys.stdin.isatty()
    chosen = name or found.template
    if interactive and not name:
        from ..ui import inert

        click.echo(inert(f"Detected: {found.project_type} ({found.reason})"))
        chosen = click.prompt("Template", default=chosen)
    tpl = get_template(root, chosen)
    values = parse_vars(variables)
    for var in tpl.variables:
        if var.name in values or var.default is not None:
            continue
        if var.required and not interactive:
            raise InvalidInput(f"template {tpl.name} needs --var {var.name}=…",
                               hint=var.description or "give it on the command line")
        if interactive:
            values[var.name] = click.prompt(var.description or var.name)
    if interactive and title is None:
        title = click.prompt("Title", default="", show_default=False) or None
    project = Project.open(root.parent) if root is not None else Project.init(base)[0]
    m = project.plan_from_template(tpl.name, title=title, variables=values,
                                   start=date_arg(start, "start date"), priority=priority,
                                   owner=owner)
    out: dict[str, Any] = {"milestone": m.to_dict(), "detection": found.to_dict(),
                           "template": tpl.name}
    say(f"Detected {found.project_type}; planned {m.id}: {m.title} from the {tpl.name} "
        f"template ({plural(len(m.tasks), 'task')}, due {m.due_date})", out, as_json,
        ref=m.id, milestone_id=m.id)
