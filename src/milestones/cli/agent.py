"""Commands for agents working a project in parallel: `ready` and `agent ...`.

Every `agent` subcommand says who acts with ``--agent ID`` (or the environment
variable ``MILESTONE_AGENT_ID``) and prints the JSON contract with ``--json``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from ..ui import inert, plural
from . import reads, steps
from .group import cli, get_project, opened_project

AGENT_HELP = "The acting agent's id or name (default: $MILESTONE_AGENT_ID)."

if TYPE_CHECKING:
    from ..agents.coord import Agents


def agents() -> Agents:
    """The coordination API of the project this command works on (loaded on first use)."""
    from ..agents.coord import Agents

    return Agents(get_project())


def out(data: dict[str, Any], as_json: bool, text: str) -> None:
    """An agent command's answer (reads.out), protected text opened."""
    reads.out(data, as_json, text, opened_project())


def agent_option(func: Any) -> Any:
    return click.option("--agent", "agent", default=None, metavar="ID", help=AGENT_HELP)(func)


def json_option(func: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the versioned JSON contract instead of text.")(func)


@cli.command()
@click.argument("ref", required=False)
@click.option("--limit", "-n", type=click.IntRange(min=1), default=None,
              help="Only the best N.")
@json_option
def ready(ref: str | None, limit: int | None, as_json: bool) -> None:
    """Tasks agents can claim now (of milestone REF, or every milestone), best first.

    \b
    Ready means: todo, every dependency done, not held by an agent. A task whose
    paths overlap a held task's is listed as not claimable now, with the reason.

    \b
    Examples:
      milestone ready
      milestone ready --limit 5
      milestone ready 3 --json
    """
    reads.ready(get_project, ref, limit, as_json)


@cli.group()
def agent() -> None:
    """Agents working one project in parallel: register, claim, report, message.

    \b
    Example, the loop of any CLI agent or script:
      export MILESTONE_AGENT_ID=$(milestone agent register --name w1 --json | jq -r .agent.id)
      milestone agent claim --json        # the task, its token, and a ready prompt
      milestone agent complete --result "what was done"     # or: agent fail --reason ...
      milestone agent heartbeat           # every minute or so: renews the lease

    \b
    A claim is a lease (5 minutes unless --lease or agents.lease_seconds says
    otherwise) renewed by every heartbeat. An agent silent for longer is dead:
    its tasks go back to the queue (task_requeued), and its late `complete` is
    refused because its fencing token is stale.
    """


@agent.command()
@click.option("--name", required=True, help="A short unique name; the same name after a "
              "restart gets the same id and inbox back.")
@click.option("--kind", default="worker", show_default=True,
              help="Its role: messages to role:KIND reach it.")
@click.option("--skills", default="", help="Comma-separated skills; tasks needing skills go "
              "only to agents that have them all.")
@click.option("--pid", type=int, default=None, help="Process id to record (default: this one).")
@click.option("--host", default=None, help="Host to record (default: this machine).")
@click.option("--lease", type=int, default=None, help="Seconds of silence before it counts "
              "as dead (default: agents.lease_seconds, 300).")
@click.option("--identity", default=None, metavar="WHO",
              help="Whose role it works with (default: yours; see `milestone team`).")
@json_option
def register(name: str, kind: str, skills: str, pid: int | None, host: str | None,
             lease: int | None, identity: str | None, as_json: bool) -> None:
    """Register an agent; prints its id (use it as --agent or MILESTONE_AGENT_ID).

    \b
    Examples:
      milestone agent register --name worker-1 --skills python,docs
      milestone agent register --name watcher --kind monitor --json
    """
    entry = agents().register(
        name, kind=kind, skills=skills.split(","), pid=pid, host=host, lease=lease,
        identity=identity)
    out({"agent": entry}, as_json, entry["id"])


@agent.command()
@agent_option
@json_option
def heartbeat(agent: str | None, as_json: bool) -> None:
    """Say the agent is alive: renews the leases of everything it holds.

    \b
    Example:
      milestone agent heartbeat --agent agent-1
    """
    data = agents().heartbeat(agent)
    held = ", ".join(data["holds"]) or "nothing"
    out(data, as_json, f"{data['agent']['id']} alive; holds {held}; {data['inbox']} unread")


@agent.command()
@click.argument("ref", required=False)
@click.option("--lease", type=int, default=None, help="Lease in seconds for this claim.")
@agent_option
@json_option
def claim(ref: str | None, lease: int | None, agent: str | None, as_json: bool) -> None:
    """Claim the best ready task (of milestone REF, or any) under a lease.

    \b
    The JSON carries the task, its fencing token and a ready-to-use prompt (the
    task, its milestone, its dependencies' results, what done means). When
    nothing can be claimed, "ref" is null and "open"/"held" say whether to wait
    (work is held or blocked) or stop ("open" is 0). Exit code 0 either way.

    \b
    Examples:
      milestone agent claim --json
      milestone agent claim 3 --lease 900 --agent worker-1
    """
    steps.claim(get_project, ref, lease, agent, as_json)


def _token_option(func: Any) -> Any:
    return click.option("--token", type=int, default=None,
                        help="The claim's fencing token (refused when stale).")(func)


@agent.command()
@click.argument("ref", required=False)
@click.option("--result", default=None, help="A one-line summary of what was done.")
@click.option("--time-spent", type=int, default=None, metavar="SECONDS",
              help="Time spent (default: since the claim).")
@click.option("--next", "next_", is_flag=True,
              help="Claim the next task in the same step (JSON: \"next\", as claim's).")
@click.option("--scope", default=None, metavar="MILESTONE",
              help="With --next: claim from this milestone only.")
@_token_option
@agent_option
@json_option
def complete(ref: str | None, result: str | None, time_spent: int | None, next_: bool,
             scope: str | None, token: int | None, agent: str | None, as_json: bool) -> None:
    """Finish a claimed task (REF may be left out when the agent holds one).

    \b
    Examples:
      milestone agent complete --result "endpoint and tests added"
      milestone agent complete 3/2 --token 4 --time-spent 600 --json
      milestone agent complete --result done --next --json    # and claim the next
    """
    data = agents().complete(agent, ref, token=token, result=result,
                                         time_spent=time_spent, claim_next=next_, scope=scope)
    text = f"completed {data['ref']}"
    nxt = data.get("next")
    if nxt is not None:
        text += (f"; claimed {nxt['ref']} (token {nxt['token']})" if nxt["ref"]
                 else f"; nothing to claim ({nxt['open']} open)")
    out(data, as_json, text)


@agent.command()
@click.argument("ref", required=False)
@click.option("--reason", required=True, help="Why it failed (one line).")
@_token_option
@agent_option
@json_option
def fail(ref: str | None, reason: str, token: int | None, agent: str | None,
         as_json: bool) -> None:
    """Report a claimed task failed: re-queued, or blocked and escalated after
    agents.max_attempts failures (3).

    \b
    Example:
      milestone agent fail --reason "tests fail: 2 errors in test_api.py"
    """
    data = agents().fail(agent, ref, token=token, reason=reason)
    tail = "blocked and escalated" if data["escalated"] else "back in the queue"
    out(data, as_json, f"failed {data['ref']} (attempt {data['attempts']}): {tail}")


@agent.command()
@click.argument("ref", required=False)
@_token_option
@agent_option
@json_option
def release(ref: str | None, token: int | None, agent: str | None, as_json: bool) -> None:
    """Give a claimed task back to the queue.

    \b
    Example:
      milestone agent release 3/2 --agent worker-1
    """
    data = agents().release(agent, ref, token=token)
    out(data, as_json, f"released {data['ref']}")


@agent.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Registered agents: status (live, dead, gone), last heartbeat, what each holds.

    \b
    Example:
      milestone agent list --json
    """
    rows = agents().roster()
    lines = [f"{r['id']:<10} {inert(r['name']):<16} {r.get('kind', ''):<10} {r['status']:<5} "
             f"seen {r.get('last_seen')}  holds {', '.join(r['holds']) or '-'}" for r in rows]
    out({"agents": rows}, as_json, "\n".join(lines) or "no agents registered")


@agent.command()
@click.option("--to", "to", required=True, help="An agent id or name, role:KIND, or * (all).")
@click.argument("body")
@agent_option
@json_option
def send(to: str, body: str, agent: str | None, as_json: bool) -> None:
    """Send a message to an agent, a role, or everyone live (*).

    \b
    Examples:
      milestone agent send --to agent-2 "api schema changed, rebase"
      milestone agent send --to role:reviewer "3/4 ready for review"
    """
    msg = agents().send(agent, to, body)
    out({"message": msg}, as_json,
        f"message {msg['id']} to {plural(len(msg['recipients']), 'agent')}")


@agent.command()
@click.argument("body")
@agent_option
@json_option
def broadcast(body: str, agent: str | None, as_json: bool) -> None:
    """Send a message to every live agent.

    \b
    Example:
      milestone agent broadcast "main is red: stop merging"
    """
    msg = agents().send(agent, "*", body)
    out({"message": msg}, as_json,
        f"message {msg['id']} to {plural(len(msg['recipients']), 'agent')}")


@agent.command()
@click.option("--all", "all_", is_flag=True, help="Include messages already acked.")
@agent_option
@json_option
def inbox(all_: bool, agent: str | None, as_json: bool) -> None:
    """Messages for the agent it has not acked (they survive restarts).

    \b
    Example:
      milestone agent inbox --agent worker-1 --json
    """
    rows = agents().inbox(agent, include_acked=all_)
    lines = [f"#{m['id']} {m['sent_at']} from {inert(m['from'])}: {inert(m['body'])}"
             for m in rows]
    out({"messages": rows}, as_json, "\n".join(lines) or "no messages")


@agent.command()
@click.argument("ids", nargs=-1, type=int, required=True)
@agent_option
@json_option
def ack(ids: tuple[int, ...], agent: str | None, as_json: bool) -> None:
    """Mark messages read.

    \b
    Example:
      milestone agent ack 4 5
    """
    newly = agents().ack(agent, list(ids))
    out({"acked": newly}, as_json, f"acked {plural(len(newly), 'message')}")


@agent.command()
@agent_option
@json_option
def cleanup(agent: str | None, as_json: bool) -> None:
    """Deregister the agent and release its claims; with no agent given, release
    the claims of every dead one.

    \b
    Examples:
      milestone agent cleanup --agent worker-1
      milestone agent cleanup            # sweep dead agents
    """
    who = agent or os.environ.get("MILESTONE_AGENT_ID")
    data = agents().cleanup(who)
    if who:
        text = (f"{data['agent']['id']} cleaned up; released "
                f"{plural(len(data['released']), 'task')}")
    else:
        text = f"dead agents: {', '.join(data['dead']) or 'none'} (their claims are released)"
    out(data, as_json, text)
