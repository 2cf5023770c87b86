"""Storage rules (MS5xx, the `hybrid` type): the log, the snapshots and the files agree."""

from __future__ import annotations

from .registry import Context, rule


@rule(
    "MS501",
    "storage",
    "error",
    "the event log's hash chain is broken",
    "restore the log from a backup; `milestone doctor` shows the first bad line",
)
def chain(ctx: Context) -> None:
    if ctx.store is None:
        return
    for c in ctx.index.log:  # read once, and replayed as it is read, for MS502
        if not c["ok"] and c["name"] in ("hash chain", "event log readable"):
            ctx.report(c["detail"], ref="logs/progress-events.jsonl")


@rule(
    "MS502",
    "storage",
    "error",
    "the snapshots differ from what the event log says",
    "run `milestone doctor --repair`",
)
def snapshots(ctx: Context) -> None:
    if ctx.store is None:
        return
    replayed = ctx.index.replayed()
    state = ctx.index.stored
    for mid in sorted(set(replayed.milestones) | set(state.milestones)):
        if replayed.milestones.get(mid) != state.milestones.get(mid):
            ctx.report(f"{mid} differs from the event log", ref=mid)


@rule(
    "MS503",
    "storage",
    "warning",
    "a change is on disk but not yet recorded",
    "run any milestone command (or `milestone doctor --repair`) to record it",
)
def pending(ctx: Context) -> None:
    if ctx.store is None:
        return
    if ctx.store.needs_sync():
        ctx.report(
            "files, the log or state.json changed outside a command (a hand edit or "
            "an interrupted write)",
            ref=".milestones",
        )


@rule(
    "MS504",
    "storage",
    "error",
    "the event log ends in a torn line",
    "run `milestone doctor --repair` (it truncates the unfinished last line)",
)
def torn(ctx: Context) -> None:
    path = getattr(ctx.store, "log_path", None)
    if path is None or not path.exists():
        return
    size = path.stat().st_size
    if size:
        with path.open("rb") as f:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                ctx.report(
                    "the last line of the event log is incomplete", ref="logs/progress-events.jsonl"
                )
