"""Plans from documents: templates, Kiro specs, the YAML export and the index rebuild.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import model as md
from ..errors import (
    InvalidInput,
    NotFound,
)
from ..storage import fsutil
from .constants import DIRNAME, SCHEMA
from .tasks import Tasks


class Specs(Tasks):
    """Templates, Kiro specs, export and reindex."""

    # ------------------------------------------------------ notes, views

    # --------------------------------------------------------- templates

    def plan_from_template(self, name: str, *, title: str | None = None,
                           variables: Mapping[str, Any] | None = None,
                           start: str | None = None, **overrides: Any) -> md.Milestone:
        """A milestone from a built-in or user template, through the validated write."""
        from ..plans import templates

        template = templates.get_template(self.root, name)
        spec = templates.render(template, title=title, variables=variables,
                                start=start or self.today())
        spec.update({k: v for k, v in overrides.items() if v is not None})
        return self.plan_many([spec])[0]

    # ------------------------------------------------------------- kiro

    def role_of(self, actor: str | None = None) -> str | None:
        """The actor's team role; with no team configured everyone is an owner."""
        who = actor or self.actor
        members = [m for m in (self.config().get("team") or {}).get("members") or []
                   if isinstance(m, Mapping)]
        if not members:
            return "owner"
        for m in members:
            names = {str(m.get(k)) for k in ("name", "email", "id") if m.get(k)}
            if who in names | {str(a) for a in m.get("aliases") or []}:
                return str(m.get("role") or "contributor")
        return None

    def import_kiro(self, path: Path, *, title: str | None = None, policy: str | None = None,
                    enforcement: str | None = None, priority: str = "medium",
                    due: str | None = None) -> md.Milestone:
        """A milestone with ``workflow: kiro`` from a spec directory (or its tasks.md)."""
        from ..plans import kiro

        spec = kiro.read_spec(Path(path))
        tasks = kiro.tasks_to_specs(spec.tasks)
        for t in tasks:
            t.pop("optional", None)
        repo = self.root.parent.resolve()
        try:
            where = str(spec.directory.resolve().relative_to(repo))
        except ValueError:
            where = str(spec.directory.resolve())
        settings = md.kiro_settings(self.config().get("kiro"),
                                    {"policy": policy, "enforcement": enforcement})
        story = next((r.story for r in spec.requirements if r.story), None)
        self._trust_runs = False  # commands in an imported spec wait for a person's approval
        try:
            return self._import_kiro_plan(spec, tasks, title, priority, due, settings, story,
                                          where)
        finally:
            self._trust_runs = True

    def _import_kiro_plan(self, spec: Any, tasks: list[dict[str, Any]], title: str | None,
                          priority: str, due: str | None, settings: dict[str, Any],
                          story: str | None, where: str) -> md.Milestone:
        return self.plan_many([{
            "title": title or spec.name.replace("-", " ").replace("_", " ").capitalize(),
            "description": story or f"Kiro spec {spec.name}",
            "priority": priority, "due_date": due, "tasks": tasks, "workflow": "kiro",
            "tags": ["kiro"],
            "kiro": settings | {
                "spec": spec.name, "path": where, "tasks_source": spec.tasks_md, "reviews": [],
                # boxes ticked in Kiro before the import: not work started past a gate
                "imported_done": [f"task-{i}" for i, t in enumerate(tasks, 1)
                                  if t["status"] == "done"]},
        }])[0]

    def export_kiro(self, ref: str, dest: Path | None = None) -> str:
        """The milestone as a Kiro tasks.md (the imported text, with boxes brought up to
        date); with ``dest``, also written there (atomically)."""
        from ..plans import kiro

        m = self.milestone(ref)
        source = (m.kiro or {}).get("tasks_source") if m.workflow == "kiro" else None
        text = kiro.export_tasks_md(m.to_dict(), source)
        if dest is not None:
            from ..storage.yamlio import check_writable

            data = text.encode("utf-8")
            check_writable(len(data), str(dest))  # `import kiro` could not read it back
            fsutil.atomic_write(dest, data)
        return text

    def export_yaml(self, dest: Path | None = None) -> dict[str, Any]:
        """Write every milestone as the file backend would: ``DEST/active/milestone-NNN.yaml``
        (``DEST/completed/`` when archived), as the text it was last written as when that
        still says the same (comments kept), else a fresh ``dump_fast``: what a migration
        to the file backend writes. Default DEST: ``.milestones/export/``. Milestone files
        left in DEST by an earlier export that are no longer there are removed."""
        from ..storage import fsutil, yamlio
        from ..storage.file import FILE_RE, FileStore

        folder = (Path(dest) if dest is not None else self.root / "export").absolute()
        base = self.root.resolve()
        where = folder.resolve()
        for d in ("", "active", "completed", "config", "logs", "database"):
            inside = base / d if d else base
            if where == inside or (d and inside in where.parents):
                raise InvalidInput(f"{folder} is the project's own data ({DIRNAME}/{d})",
                                   hint=f"export elsewhere (default: {DIRNAME}/export/)")
        st = self.state()
        sources = self.store.sources()
        render = FileStore(folder)  # renders only: the file backend's rules for the text
        written: list[str] = []
        removed: list[str] = []
        files = []
        for mid, snap in sorted(st.milestones.items()):
            rel = f"{'completed' if snap.get('status') == 'archived' else 'active'}/{mid}.yaml"
            data = render.file_text(snap, sources.get(mid)).encode("utf-8")
            yamlio.check_writable(len(data), str(folder / rel))  # before any is written
            files.append((rel, data))
        try:
            for rel, data in files:
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                fsutil.atomic_write(folder / rel, data)
                written.append(rel)
            for sub in ("active", "completed"):
                if (folder / sub).is_dir():
                    for entry in sorted((folder / sub).iterdir()):
                        rel = f"{sub}/{entry.name}"
                        if FILE_RE.match(entry.name) and rel not in written:
                            entry.unlink()
                            removed.append(rel)
        except OSError as exc:
            raise fsutil.storage_error(exc, folder, "export to") from None
        return {"schema": SCHEMA, "path": str(folder), "backend": self.store.backend,
                "milestones": len(written), "files": written, "removed": removed}

    def reindex(self) -> int:
        """Rebuild the hybrid backend's index (``database/index.db``) from the snapshots,
        under the writer lock, hand edits recorded first; returns the milestones indexed."""
        self.follow_backend()
        store = self.store
        rebuild = getattr(store, "reindex", None)
        if store.backend != "hybrid" or rebuild is None:
            raise InvalidInput(
                f"only the hybrid backend has an index; this project uses the "
                f"{store.backend} backend",
                hint="nothing to rebuild: `milestone storage migrate --to hybrid` adds one"
                if store.backend == "file" else
                "nothing to rebuild: its tables are its data (`milestone doctor` checks them)",
            )
        if not store.exists():
            raise NotFound(f"no project at {self.root}", hint="run `milestone init` first")
        with store.lock():
            if self.follow_backend():
                raise InvalidInput(f"the project moved to the {self.store.backend} backend "
                                   f"meanwhile", hint="see `milestone storage status`")
            self.sync()
            return int(rebuild())
