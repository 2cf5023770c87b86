"""Validation commands: validate, schema."""

from __future__ import annotations

import json
import sys

import click

from .group import cli, emit, get_project, output_options

TYPE_CHOICES = ("standard", "hybrid", "quick", "kiro", "all")


@cli.command()
@click.argument("ref", required=False)
@click.option(
    "--type",
    "-t",
    "type_",
    type=click.Choice(TYPE_CHOICES),
    default="standard",
    show_default=True,
    help="standard: structure, dependencies, timeline, resources; "
    "hybrid: storage consistency; quick: templates; kiro: spec workflow.",
)
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@click.option("--list-rules", is_flag=True, help="List every rule instead of validating.")
@output_options
def validate(
    ref: str | None, type_: str, strict: bool, list_rules: bool, as_json: bool, ui: str | None
) -> None:
    """Check the plan against the rules; exit 5 when errors are found.

    Findings name the file:line:column (or reference) at fault and how to fix it.
    Rules can be re-graded or turned off in config/config.yaml under
    validation.rules (e.g. `MS304: error` or `MS106: off`).

    \b
    Examples:
      milestone validate
      milestone validate 3 --type all --strict
      milestone validate --list-rules --json
    """
    if list_rules:
        from ..project import all_rules

        rules = [r.to_dict() for r in all_rules()]
        emit({"schema": 1, "rules": rules}, "rules", as_json, ui)
        return
    data = get_project().validate(ref, ("all",) if type_ == "all" else (type_,))
    failed = not data["ok"] or (strict and data["counts"]["warning"] > 0)
    data["strict"] = strict
    emit(data, "validation", as_json, ui)
    if failed:
        sys.exit(5)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of milestone files (editors use it to check as you type).

    \b
    Example:
      milestone schema > milestone.schema.json
    """
    from ..project import milestone_schema

    click.echo(json.dumps(milestone_schema(), indent=2))
