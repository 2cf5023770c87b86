"""Guess what kind of project a repository is, and the template that suits it.

``detect_project(path)`` looks at manifest files (pyproject.toml, setup.py,
requirements*.txt, Pipfile, package.json, Cargo.toml, go.mod), docs sites
(mkdocs.yml, Sphinx's docs/conf.py, docusaurus.config.*, book.toml, .vitepress),
Jupyter notebooks and Kiro specs (``.kiro/specs/<name>/``). Every finding becomes
a ``Signal`` saying what was found where and why it matters.

It is quick on big trees: it reads no file it does not need, goes at most
``MAX_DEPTH`` directories down, stops after ``MAX_ENTRIES`` directory entries, and
skips hidden directories, dependencies and build output (node_modules, .venv,
target, ...) and tests/examples (their manifests describe fixtures, not the project).
Broken or oversized files are noted and skipped, never fatal.

How the template is chosen, first match wins:

1. ``.kiro/specs`` holds a spec                          -> kiro-spec
2. a web frontend framework and an API framework         -> feature (full stack)
3. a web frontend framework (react, vue, svelte, ...)    -> frontend
4. an API/web backend framework (django, fastapi, ...)   -> api
5. notebooks, Jupyter dependencies or an ML pipeline     -> research
6. a docs site and no code besides its tooling           -> documentation
7. code in a known language                              -> feature
8. nothing recognised                                    -> personal
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..ui import plural
from .detect_langs import (
    DOCS_DIRS,
    Findings,
    Signal,
    in_docs,
    read_go,
    read_javascript,
    read_python,
    read_rust,
)

__all__ = ["DOCS_DIRS", "MAX_DEPTH", "MAX_ENTRIES", "SKIP_DIRS", "SPEC_FILES", "Detection",
           "Signal", "detect_project"]

MAX_DEPTH = 3  # directories below the root that are looked into
MAX_ENTRIES = 20_000  # directory entries looked at, in all

SKIP_DIRS = frozenset({
    "node_modules", "bower_components", "jspm_packages", "__pycache__", "venv", "env",
    "virtualenv", "site-packages", "build", "dist", "target", "out", "vendor", "third_party",
    "third-party", "coverage", "htmlcov", "tests", "test", "testing", "__tests__", "fixtures",
    "examples", "example", "samples", "sample", "bench", "benchmarks", "tmp", "temp", "_build",
    "site", "public",
})
SPEC_FILES = ("requirements.md", "design.md", "tasks.md")


@dataclass
class Detection:
    root: str
    project_type: str  # kiro-spec|fullstack|frontend|api|research|documentation|software|unknown
    template: str  # a built-in template name
    reason: str  # why that template
    languages: list[str] = field(default_factory=list)
    frameworks: list[str] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    truncated: bool = False  # the scan stopped at MAX_ENTRIES

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root, "project_type": self.project_type, "template": self.template,
            "reason": self.reason, "languages": list(self.languages),
            "frameworks": list(self.frameworks),
            "signals": [s.to_dict() for s in self.signals], "truncated": self.truncated,
        }


# ----------------------------------------------------------------- scanning


def _scan(root: Path) -> tuple[list[str], bool]:
    """Relative paths (posix) of the files worth a look, breadth first; truncated?"""
    found: list[str] = []
    queue: deque[tuple[Path, str, int]] = deque([(root, "", 0)])
    seen = 0
    while queue:
        directory, rel, depth = queue.popleft()
        entries: list[os.DirEntry[str]] = []
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    entries.append(entry)
                    if seen + len(entries) > MAX_ENTRIES:
                        break
        except OSError:
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            seen += 1
            if seen > MAX_ENTRIES:
                return sorted(found, key=_shallow_first), True
            path = f"{rel}{entry.name}"
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                name = entry.name
                if depth < MAX_DEPTH and not name.startswith(".") and name not in SKIP_DIRS \
                        and not name.endswith(".egg-info"):
                    queue.append((Path(entry.path), f"{path}/", depth + 1))
            elif _interesting(entry.name):
                found.append(path)
    return found, False


def _shallow_first(rel: str) -> tuple[int, str]:
    return rel.count("/"), rel


def _interesting(name: str) -> bool:
    return (name in ("pyproject.toml", "setup.py", "setup.cfg", "Pipfile", "package.json",
                     "Cargo.toml", "go.mod", "mkdocs.yml", "mkdocs.yaml", "conf.py",
                     "book.toml", "tsconfig.json", "dvc.yaml", "MLproject")
            or name.endswith(".ipynb")
            or name.startswith("docusaurus.config.")
            or (name.startswith("requirements") and name.endswith((".txt", ".in"))))


# ------------------------------------------------ docs, notebooks, Kiro specs


def _docs_sites(root: Path, files: list[str], f: Findings) -> None:
    for rel in files:
        parts = rel.split("/")
        name = parts[-1]
        site = None
        if name in ("mkdocs.yml", "mkdocs.yaml") and len(parts) <= 2:
            site = ("mkdocs", f"{name} configures an MkDocs site")
        elif name == "conf.py" and parts[0].lower() in DOCS_DIRS and len(parts) <= 3:
            site = ("sphinx", f"{rel} configures a Sphinx docs site")
        elif name.startswith("docusaurus.config.") and len(parts) <= 2:
            site = ("docusaurus", f"{name} configures a Docusaurus site")
        elif name == "book.toml" and len(parts) <= 2:
            site = ("mdbook", f"{name} configures an mdBook")
        if site:
            f.signals.append(Signal("docs", site[0], rel, site[1]))
            f.docs.append(rel)
    for rel in (".vitepress", "docs/.vitepress"):
        if (root / rel).is_dir():
            f.signals.append(Signal("docs", "vitepress", rel, f"{rel} configures a VitePress site"))
            f.docs.append(rel)


def _notebooks(files: list[str], f: Findings) -> None:
    books = [r for r in files if r.endswith(".ipynb")]
    outside = [r for r in books if not in_docs(r)]
    if outside:
        shown = ", ".join(outside[:3]) + (f" and {len(outside) - 3} more" if len(outside) > 3
                                          else "")
        f.signals.append(Signal("notebooks", "jupyter", outside[0],
                                f"{plural(len(outside), 'Jupyter notebook')}: {shown}"))
        f.research.append(plural(len(outside), "notebook"))
    if len(books) > len(outside):
        f.signals.append(Signal("docs", "notebooks", next(r for r in books if in_docs(r)),
                                "notebooks in the docs (documentation, not research)"))
    for rel in files:
        name = rel.rsplit("/", 1)[-1]
        if name in ("dvc.yaml", "MLproject"):
            f.signals.append(Signal("research", name, rel, f"{name} defines an ML/data pipeline"))
            f.research.append(name)


def _kiro(root: Path, f: Findings) -> None:
    specs = root / ".kiro" / "specs"
    try:
        entries = sorted(e for e in specs.iterdir() if e.is_dir())
    except OSError:
        return
    names = [e.name for e in entries[:200] if any((e / s).is_file() for s in SPEC_FILES)]
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        f.signals.append(Signal("kiro", "kiro", ".kiro/specs",
                                f"{plural(len(names), 'Kiro spec')}: {shown}"))
        f.kiro.extend(names)


# ------------------------------------------------------------------ verdict


def detect_project(path: Path | str) -> Detection:
    """What kind of project ``path`` holds, the signals behind it and a template name."""
    root = Path(path)
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a directory", hint="give the project's directory")
    files, truncated = _scan(root)
    f = Findings()
    _kiro(root, f)
    read_python(root, files, f)
    read_javascript(root, files, f)
    read_rust(root, files, f)
    read_go(root, files, f)
    _docs_sites(root, files, f)
    _notebooks(files, f)
    if truncated:
        f.signals.append(Signal("note", "scan", ".",
                                f"stopped after {MAX_ENTRIES} entries; the guess may be partial"))

    roles = f.roles()
    by_role = {role: [d for d, r in f.frameworks.items() if r == role] for role in roles}
    research = bool(f.research)
    frontend = by_role.get("frontend", []) + ([] if research else by_role.get("data-app", []))
    backend = by_role.get("backend", [])
    if f.kiro:
        kind, template = "kiro-spec", "kiro-spec"
        reason = f"Kiro specs in .kiro/specs ({', '.join(f.kiro[:3])})"
    elif frontend and backend:
        kind, template = "fullstack", "feature"
        reason = (f"a web frontend ({', '.join(frontend)}) and a backend ({', '.join(backend)}):"
                  " full-stack work")
    elif frontend:
        kind, template = "frontend", "frontend"
        reason = f"a web frontend framework ({', '.join(frontend)})"
    elif backend:
        kind, template = "api", "api"
        reason = f"an API/web backend framework ({', '.join(backend)})"
    elif research:
        kind, template = "research", "research"
        reason = f"notebooks or data-science tooling ({', '.join(dict.fromkeys(f.research))})"
    elif f.docs and not f.code:
        kind, template = "documentation", "documentation"
        reason = "a documentation site and no other code"
    elif f.languages:
        kind, template = "software", "feature"
        reason = f"{', '.join(f.languages)} code without a web framework"
    else:
        kind, template = "unknown", "personal"
        reason = "no known project files found"
    return Detection(
        root=str(root), project_type=kind, template=template, reason=reason,
        languages=list(f.languages), frameworks=list(f.frameworks), signals=f.signals,
        truncated=truncated,
    )
