"""Worker processes for the durability tests (run as ``python worker.py MODE ...``).

Modes:
  changes ROOT INDEX N GO    wait for the file GO, then make N one-event changes
                             through the CLI (in this process, one command each)
  reader ROOT STOP           loop `status --all --json` and raw file reads until
                             the file STOP exists; print a JSON report
  churn ROOT SEED [MARKER]   print "ready", then change the project forever
                             (the test SIGKILLs it at a random moment); MARKER
                             exists while a commit is under way
  crash POINT ROOT ARGS...   run the CLI command ARGS, dying with os._exit(99)
                             at POINT of the write (a deterministic crash)
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from milestones.cli import cli


def run_cli(runner: CliRunner, root: str, *args: str) -> Any:
    return runner.invoke(cli, ["-C", root, *args], catch_exceptions=True)


def change_args(index: int, j: int) -> list[str]:
    """Change ``j`` of worker ``index``: each one produces exactly one event."""
    kind = j % 3
    if kind == 0:  # task-<index+1> is in progress; progress only ever goes up
        return ["task", "progress", f"1/{index + 1}", str(j // 3 + 1)]
    if kind == 1:
        return ["task", "add", "1", f"w{index}-task-{j}"]
    return ["note", f"w{index}-note-{j}"]


def changes(root: str, index: int, n: int, go: str) -> int:
    runner = CliRunner(mix_stderr=False)
    Path(go).with_name(f"ready-{index}").touch()
    while not Path(go).exists():
        time.sleep(0.001)
    for j in range(n):
        args = change_args(index, j)
        result = run_cli(runner, root, *args)
        if result.exit_code != 0:
            print(
                f"worker {index} change {j} {args}: exit {result.exit_code}: "
                f"{result.stderr} {result.exception!r}",
                file=sys.stderr,
            )
            return 1
    return 0


def reader(root: str, stop: str) -> int:
    runner = CliRunner(mix_stderr=False)
    base = Path(root) / ".milestones"
    reads, errors, last_tasks = 0, [], 0
    while not Path(stop).exists() or reads == 0:
        result = run_cli(runner, root, "status", "--all", "--json")
        try:
            if result.exit_code != 0:
                raise RuntimeError(f"exit {result.exit_code}: {result.stderr}")
            data = json.loads(result.stdout)
            tasks = data["totals"]["tasks"]
            total = sum(tasks.values())
            if total < last_tasks:
                raise RuntimeError(f"went back in time: {total} tasks after {last_tasks}")
            last_tasks = total
            # Raw reads of every file a writer replaces: never partial.
            from milestones.storage import yamlio

            # On the database, rows in one file: SQLite's transactions, not file renames.
            named = (base / "config" / "storage-backend.txt").read_text().strip()
            files = named not in ("database", "postgres")
            for path in sorted((base / "active").glob("milestone-*.yaml")) if files else ():
                try:
                    raw = path.read_bytes()
                except FileNotFoundError:
                    continue  # replaced between listing and reading
                doc = yamlio.load_bytes(raw, str(path))
                if not isinstance(doc, dict) or doc.get("id") != path.stem:
                    raise RuntimeError(f"{path}: partial or foreign content")
            if files:
                json.loads((base / "logs" / "state.json").read_bytes())
        except Exception as exc:
            errors.append(f"read {reads}: {exc!r}")
        reads += 1
    print(json.dumps({"reads": reads, "errors": errors[:20], "error_count": len(errors)}))
    return 0


def one_change(project: Any, rng: random.Random, n: int) -> None:
    st = project.state()
    live = sorted(mid for mid, s in st.milestones.items() if s["status"] != "archived")
    r = rng.random()
    if not live or (r < 0.12 and len(live) < 6):
        project.plan(f"M{n}", tasks=[f"t{k}" for k in range(rng.randint(1, 3))])
        return
    if r < 0.2:
        project.note(f"note {n}")
        return
    mid = rng.choice(live)
    snap = st.milestones[mid]
    if snap["status"] in ("completed", "cancelled"):
        project.archive(mid, lessons=[f"lesson {n}"])
        return
    tasks = snap["tasks"]
    if r < 0.27 or not tasks:
        project.add_task(mid, f"added {n}")
        return
    if r < 0.30:
        project.set_current(mid)
        return
    if r < 0.33:
        project.update(mid, title=f"M{n} renamed")
        return
    if r < 0.345:
        project.delete(mid, force=True)
        return
    t = rng.choice(tasks)
    ref = f"{mid}/{t['id']}"
    s = rng.random()
    if t["status"] == "todo":
        if s < 0.6:
            project.start_task(ref, force=True)
        elif s < 0.8:
            project.skip_task(ref, reason="not needed")
        else:
            project.block_task(ref, f"waiting {n}")
    elif t["status"] == "in_progress":
        if s < 0.4:
            project.set_progress(ref, rng.randint(1, 99))
        elif s < 0.55:
            project.stop_task(ref)
        elif s < 0.9:
            project.complete_task(ref, force=True)
        else:
            project.block_task(ref, f"waiting {n}")
    elif t["status"] == "blocked":
        project.unblock_task(ref)
    elif s < 0.15:
        project.reopen_task(ref)


def mark_commits(marker: Path) -> None:
    """While a write is under way, ``marker`` exists: a SIGKILL that leaves it behind
    landed inside a write. On the YAML backends that is ``commit`` (from the event
    append to the last file of the snapshot); on the database, the whole write
    transaction (from BEGIN IMMEDIATE under ``lock`` to its COMMIT)."""
    from milestones.storage.file import FileStore
    from milestones.storage.sqlite import DatabaseStore

    @contextlib.contextmanager
    def present() -> Any:
        os.close(os.open(marker, os.O_CREAT | os.O_WRONLY, 0o644))
        try:
            yield
        finally:
            marker.unlink(missing_ok=True)  # a commit inside a commit (the hybrid index)

    real_commit = FileStore.commit
    real_lock = DatabaseStore.lock

    def commit(self: Any, *args: Any, **kwargs: Any) -> Any:
        with present():
            return real_commit(self, *args, **kwargs)

    @contextlib.contextmanager
    def lock(self: Any, *args: Any, **kwargs: Any) -> Any:
        with real_lock(self, *args, **kwargs), present():
            yield

    FileStore.commit = commit  # type: ignore[method-assign]
    DatabaseStore.lock = lock  # type: ignore[method-assign,assignment]


def churn(root: str, seed: int, marker: str | None = None) -> int:
    import ruamel.yaml  # noqa: F401  (warm every import before "ready")

    from milestones.errors import MilestoneError
    from milestones.project import Project

    if marker:
        mark_commits(Path(marker))
    rng = random.Random(seed)
    Project.open(Path(root)).state()
    print("ready", flush=True)
    n = 0
    while True:
        with contextlib.suppress(MilestoneError):
            one_change(Project.open(Path(root)), rng, n)
        n += 1


def crash(point: str, root: str, args: list[str]) -> int:
    from milestones.storage import file as fs
    from milestones.storage import fsutil

    store_cls: Any = fs.FileStore
    materialize = store_cls._materialize
    write_state = store_cls._write_state

    def die(*_: Any, **__: Any) -> None:
        os._exit(99)

    if point == "after-append":  # the event is in the log; no snapshot written
        store_cls._materialize = die
    elif point == "after-snapshot":  # files written; state.json not yet

        def materialize_then_die(self: Any, sealed: Any, adopt: Any) -> None:
            self._dying = True
            materialize(self, sealed, adopt)

        def write_state_or_die(self: Any, state: Any, **kw: Any) -> None:
            if getattr(self, "_dying", False):
                os._exit(99)
            write_state(self, state, **kw)

        store_cls._materialize = materialize_then_die
        store_cls._write_state = write_state_or_die
    elif point == "before-remove":  # moved file written to its new folder, old one kept
        store_cls._remove = die
    elif point == "torn-append":  # half the event line reaches the disk

        def half_append(path: Path, data: bytes) -> int:
            if path.name == "progress-events.jsonl" and data:
                with open(path, "ab") as f:
                    f.write(data[: len(data) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                os._exit(99)
            return fsutil.append_durable(path, data)

        fs.fsutil.append_durable = half_append  # type: ignore[assignment]
    elif point == "db-before-commit":  # events and rows written, COMMIT not reached
        from milestones.storage.sqlite import DatabaseStore

        DatabaseStore.set_meta = die  # type: ignore[method-assign,assignment]
    else:
        raise SystemExit(f"unknown crash point {point}")
    cli.main(args=["-C", root, *args], prog_name="milestone")
    return 0


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "changes":
        return changes(argv[1], int(argv[2]), int(argv[3]), argv[4])
    if mode == "reader":
        return reader(argv[1], argv[2])
    if mode == "churn":
        return churn(argv[1], int(argv[2]), *argv[3:4])
    if mode == "crash":
        return crash(argv[1], argv[2], argv[3:])
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
