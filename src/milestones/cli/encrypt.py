"""Encryption at rest: encrypt init, rotate, off, status."""

from __future__ import annotations

import click

from .group import cli, get_project, say


@cli.group()
def encrypt() -> None:
    """Encrypt protected fields at rest (AES-256-GCM): init, rotate, off, status.

    \b
    Examples:
      milestone encrypt init        # a new key in .milestones/config/encryption.key
      MILESTONE_KEY=... milestone status
      milestone encrypt rotate
    """


@encrypt.command("init")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def encrypt_init(as_json: bool) -> None:
    """Make a 256-bit key ($MILESTONE_KEY if set) and encrypt the protected fields.

    The key goes to .milestones/config/encryption.key (mode 0600, git-ignored);
    config.yaml's encryption.fields names the fields (default: descriptions,
    blocker reasons, notes).

    \b
    Examples:
      milestone encrypt init
      MILESTONE_KEY="$(cat ~/keys/plan.key)" milestone encrypt init
    """
    out = get_project().encrypt_init()
    where = out["key_file"] or "$MILESTONE_KEY"
    made = "created" if out["key_created"] else "using"
    say(f"encryption on: key id {out['key_id']} ({made} {where}); {out['events']} events "
        f"re-sealed; keep the key safe — without it protected fields show [encrypted]",
        out, as_json)
    if out["plain_backups"] and not as_json:
        click.echo(f"milestone: warning: {len(out['plain_backups'])} backups taken before hold "
                   "the plain text: remove them (or move them out of the project) — "
                   + ", ".join(out["plain_backups"]), err=True)


@encrypt.command("rotate")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def encrypt_rotate(as_json: bool) -> None:
    """Re-encrypt everything under a new key, as one interrupt-safe step.

    Current data and the log's history are sealed anew and the log re-chained; the
    old key is kept as config/encryption.key.old-<id> for backups taken before.

    \b
    Example:
      milestone encrypt rotate
    """
    out = get_project().encrypt_rotate()
    note = (" — $MILESTONE_KEY holds the old key: set it to the new one from "
            ".milestones/config/encryption.key" if out["key_in_env"] else "")
    say(f"key rotated: key id {out['key_id']}; {out['events']} events re-sealed; the old key "
        f"is kept in {out['old_key_file']} for backups taken before (delete it when they "
        f"go){note}", out, as_json)


@encrypt.command("off")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def encrypt_off(as_json: bool) -> None:
    """Decrypt every protected field back to plain text and turn encryption off.

    \b
    Example:
      milestone encrypt off
    """
    out = get_project().encrypt_off()
    say(f"encryption off: {out['events']} events decrypted; the old key is kept in "
        f"{out['old_key_file']} for backups taken before", out, as_json)


@encrypt.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def encrypt_status(as_json: bool) -> None:
    """Whether encryption is on, the key id, whether the key is here, the fields.

    \b
    Example:
      milestone encrypt status --json
    """
    out = get_project().encrypt_status()
    if not out["enabled"]:
        text = "encryption off"
    else:
        key = ("key here" if out["key_matches"] else
               "wrong key here" if out["key_here"] else "no key here")
        text = (f"encryption on: key id {out['key_id']} ({key}); protected: "
                f"{', '.join(out['fields'])}")
    say(text, out, as_json, changed=True)
