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

import json
import os
import re
import tomllib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..storage import fsutil
from ..ui import plural

MAX_DEPTH = 3  # directories below the root that are looked into
MAX_ENTRIES = 20_000  # directory entries looked at, in all
MAX_FILE_BYTES = 2 * 1024 * 1024  # manifests bigger than this are not read

SKIP_DIRS = frozenset({
    "node_modules", "bower_components", "jspm_packages", "__pycache__", "venv", "env",
    "virtualenv", "site-packages", "build", "dist", "target", "out", "vendor", "third_party",
    "third-party", "coverage", "htmlcov", "tests", "test", "testing", "__tests__", "fixtures",
    "examples", "example", "samples", "sample", "bench", "benchmarks", "tmp", "temp", "_build",
    "site", "public",
})
DOCS_DIRS = frozenset({"docs", "doc", "website", "documentation"})
SPEC_FILES = ("requirements.md", "design.md", "tasks.md")

# name (normalised) -> (display name, role). Roles: frontend, backend, docs, notebook,
# data, data-app, cli.
PYTHON_PACKAGES: dict[str, tuple[str, str]] = {
    "django": ("django", "backend"),
    "djangorestframework": ("django-rest-framework", "backend"),
    "django-ninja": ("django-ninja", "backend"),
    "flask": ("flask", "backend"),
    "fastapi": ("fastapi", "backend"),
    "starlette": ("starlette", "backend"),
    "litestar": ("litestar", "backend"),
    "falcon": ("falcon", "backend"),
    "tornado": ("tornado", "backend"),
    "sanic": ("sanic", "backend"),
    "pyramid": ("pyramid", "backend"),
    "bottle": ("bottle", "backend"),
    "quart": ("quart", "backend"),
    "connexion": ("connexion", "backend"),
    "strawberry-graphql": ("strawberry", "backend"),
    "graphene": ("graphene", "backend"),
    "streamlit": ("streamlit", "data-app"),
    "dash": ("dash", "data-app"),
    "gradio": ("gradio", "data-app"),
    "panel": ("panel", "data-app"),
    "voila": ("voila", "data-app"),
    "jupyter": ("jupyter", "notebook"),
    "jupyterlab": ("jupyterlab", "notebook"),
    "notebook": ("jupyter", "notebook"),
    "ipykernel": ("jupyter", "notebook"),
    "papermill": ("papermill", "notebook"),
    "pandas": ("pandas", "data"),
    "polars": ("polars", "data"),
    "numpy": ("numpy", "data"),
    "scipy": ("scipy", "data"),
    "scikit-learn": ("scikit-learn", "data"),
    "statsmodels": ("statsmodels", "data"),
    "matplotlib": ("matplotlib", "data"),
    "seaborn": ("seaborn", "data"),
    "torch": ("pytorch", "data"),
    "tensorflow": ("tensorflow", "data"),
    "xgboost": ("xgboost", "data"),
    "mkdocs": ("mkdocs", "docs"),
    "mkdocs-material": ("mkdocs", "docs"),
    "mkdocstrings": ("mkdocs", "docs"),
    "sphinx": ("sphinx", "docs"),
    "furo": ("sphinx", "docs"),
    "sphinx-rtd-theme": ("sphinx", "docs"),
    "jupyter-book": ("jupyter-book", "docs"),
    "click": ("click", "cli"),
    "typer": ("typer", "cli"),
}
JS_PACKAGES: dict[str, tuple[str, str]] = {
    "react": ("react", "frontend"),
    "react-dom": ("react", "frontend"),
    "vue": ("vue", "frontend"),
    "svelte": ("svelte", "frontend"),
    "@sveltejs/kit": ("sveltekit", "frontend"),
    "next": ("next.js", "frontend"),
    "nuxt": ("nuxt", "frontend"),
    "@angular/core": ("angular", "frontend"),
    "solid-js": ("solid", "frontend"),
    "preact": ("preact", "frontend"),
    "lit": ("lit", "frontend"),
    "@remix-run/react": ("remix", "frontend"),
    "astro": ("astro", "frontend"),
    "gatsby": ("gatsby", "frontend"),
    "ember-source": ("ember", "frontend"),
    "@builder.io/qwik": ("qwik", "frontend"),
    "react-native": ("react-native", "frontend"),
    "expo": ("expo", "frontend"),
    "electron": ("electron", "frontend"),
    "@tauri-apps/api": ("tauri", "frontend"),
    "alpinejs": ("alpine", "frontend"),
    "htmx.org": ("htmx", "frontend"),
    "express": ("express", "backend"),
    "koa": ("koa", "backend"),
    "fastify": ("fastify", "backend"),
    "@nestjs/core": ("nestjs", "backend"),
    "@hapi/hapi": ("hapi", "backend"),
    "hono": ("hono", "backend"),
    "restify": ("restify", "backend"),
    "@apollo/server": ("apollo-server", "backend"),
    "apollo-server": ("apollo-server", "backend"),
    "graphql-yoga": ("graphql-yoga", "backend"),
    "@trpc/server": ("trpc", "backend"),
    "@adonisjs/core": ("adonisjs", "backend"),
    "@feathersjs/feathers": ("feathers", "backend"),
    "@loopback/core": ("loopback", "backend"),
    "elysia": ("elysia", "backend"),
    "sails": ("sails", "backend"),
    "@docusaurus/core": ("docusaurus", "docs"),
    "vitepress": ("vitepress", "docs"),
    "vuepress": ("vuepress", "docs"),
    "@astrojs/starlight": ("starlight", "docs"),
    "nextra": ("nextra", "docs"),
    "docsify-cli": ("docsify", "docs"),
    "commander": ("commander", "cli"),
    "yargs": ("yargs", "cli"),
    "@oclif/core": ("oclif", "cli"),
}
RUST_CRATES: dict[str, tuple[str, str]] = {
    "actix-web": ("actix-web", "backend"),
    "axum": ("axum", "backend"),
    "rocket": ("rocket", "backend"),
    "warp": ("warp", "backend"),
    "poem": ("poem", "backend"),
    "tide": ("tide", "backend"),
    "salvo": ("salvo", "backend"),
    "tonic": ("tonic", "backend"),
    "yew": ("yew", "frontend"),
    "leptos": ("leptos", "frontend"),
    "dioxus": ("dioxus", "frontend"),
    "sycamore": ("sycamore", "frontend"),
    "tauri": ("tauri", "frontend"),
    "clap": ("clap", "cli"),
}
GO_MODULES: dict[str, tuple[str, str]] = {
    "github.com/gin-gonic/gin": ("gin", "backend"),
    "github.com/labstack/echo": ("echo", "backend"),
    "github.com/gofiber/fiber": ("fiber", "backend"),
    "github.com/go-chi/chi": ("chi", "backend"),
    "github.com/gorilla/mux": ("gorilla/mux", "backend"),
    "google.golang.org/grpc": ("grpc", "backend"),
    "connectrpc.com/connect": ("connect", "backend"),
    "github.com/beego/beego": ("beego", "backend"),
    "github.com/spf13/cobra": ("cobra", "cli"),
    "github.com/urfave/cli": ("urfave/cli", "cli"),
}
ROLE_WORDS = {
    "frontend": "a web frontend framework",
    "backend": "an API/web backend framework",
    "docs": "a documentation site generator",
    "notebook": "Jupyter tooling",
    "data": "a data/science library",
    "data-app": "a data app framework",
    "cli": "a command-line framework",
}
_DEV_GROUPS = frozenset({"dev", "develop", "development", "test", "tests", "testing", "lint",
                         "typing", "types", "ci", "check", "style"})
_DOC_GROUPS = frozenset({"doc", "docs", "documentation"})
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_QUOTED_NAME = re.compile(r"""["']\s*([A-Za-z0-9][A-Za-z0-9._-]*)""")
_LINE_NAME = re.compile(r"(?m)^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_GO_MAJOR = re.compile(r"/v\d+$")


@dataclass(frozen=True)
class Signal:
    kind: str  # language | framework | docs | notebooks | kiro | research | note
    name: str  # python, django, mkdocs, ...
    path: str  # the file or directory it came from, relative to the root (posix)
    reason: str  # why it matters, for people

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "path": self.path, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


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


def _read(root: Path, rel: str, notes: list[Signal]) -> str | None:
    path = root / rel
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            notes.append(Signal("note", path.name, rel, "too big to read; skipped"))
            return None
        # A FIFO or a device by that name would block or never end: checked first.
        return fsutil.read_input(path, MAX_FILE_BYTES).decode("utf-8")
    except InvalidInput:
        notes.append(Signal("note", path.name, rel, "not a regular file; skipped"))
    except UnicodeDecodeError:
        notes.append(Signal("note", path.name, rel, "not UTF-8; skipped"))
    except OSError as exc:
        notes.append(Signal("note", path.name, rel, f"unreadable ({exc.strerror}); skipped"))
    return None


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(spec: str) -> str | None:
    m = _REQ_NAME.match(spec)
    return _norm(m.group(1)) if m else None


def _in_docs(rel: str) -> bool:
    return "/" in rel and rel.split("/", 1)[0].lower() in DOCS_DIRS


# --------------------------------------------------------------- manifests


class _Findings:
    def __init__(self) -> None:
        self.signals: list[Signal] = []
        self.languages: list[str] = []
        self.frameworks: dict[str, str] = {}  # display name -> role
        self.code: list[str] = []  # manifests that describe code (not only docs tooling)
        self.docs: list[str] = []
        self.research: list[str] = []  # what points at research work
        self.kiro: list[str] = []

    def language(self, name: str, rel: str, reason: str) -> None:
        if name not in self.languages:
            self.languages.append(name)
            self.signals.append(Signal("language", name, rel, reason))

    def framework(self, display: str, role: str, rel: str, via: str, *,
                  owned_by_docs: str | None = None) -> None:
        if owned_by_docs and role in ("frontend", "data-app"):
            role = "docs"
            reason = f"{via} is part of the {owned_by_docs} docs site"
        else:
            reason = f"{via} is {ROLE_WORDS[role]}"
        if display in self.frameworks and (self.frameworks[display] == role or role == "docs"):
            return
        self.frameworks[display] = role
        self.signals.append(Signal("framework", display, rel, reason))
        if role == "docs":
            self.docs.append(rel)
        if role == "notebook":
            self.research.append(display)

    def roles(self) -> set[str]:
        return set(self.frameworks.values())


def _python_deps(rel: str, text: str, f: _Findings) -> dict[str, str]:
    """Dependency name -> scope (main | dev | docs) of one Python manifest."""
    name = rel.rsplit("/", 1)[-1]
    deps: dict[str, str] = {}

    def add(dep: str | None, scope: str) -> None:
        if dep and (dep not in deps or deps[dep] != "main"):
            deps[dep] = scope

    def group_scope(group: str) -> str:
        g = _norm(group)
        return "docs" if g in _DOC_GROUPS else "dev" if g in _DEV_GROUPS else "main"

    if name in ("pyproject.toml", "Pipfile"):
        try:
            data = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, RecursionError) as exc:  # RecursionError: nesting
            f.signals.append(Signal("note", name, rel, f"not valid TOML ({exc}); dependencies "
                                    "not read"))
            return deps
        if name == "Pipfile":
            for key, scope in (("packages", "main"), ("dev-packages", "dev")):
                for dep in _mapping(data.get(key)):
                    add(_norm(str(dep)), scope)
            return deps
        project = _mapping(data.get("project"))
        for spec in _strings(project.get("dependencies")):
            add(_req_name(spec), "main")
        for group, specs in _mapping(project.get("optional-dependencies")).items():
            for spec in _strings(specs):
                add(_req_name(spec), group_scope(str(group)))
        for group, specs in _mapping(data.get("dependency-groups")).items():
            for spec in _strings(specs):
                add(_req_name(spec), group_scope(str(group)))
        poetry = _mapping(_mapping(data.get("tool")).get("poetry"))
        for dep in _mapping(poetry.get("dependencies")):
            if dep != "python":
                add(_norm(str(dep)), "main")
        for group, body in _mapping(poetry.get("group")).items():
            for dep in _mapping(_mapping(body).get("dependencies")):
                add(_norm(str(dep)), group_scope(str(group)))
        return deps
    if name in ("setup.py", "setup.cfg"):
        # Never executed: known package names in quoted strings (setup.py) or lines.
        pattern = _QUOTED_NAME if name == "setup.py" else _LINE_NAME
        for m in pattern.finditer(text):
            dep = _norm(m.group(1))
            if dep in PYTHON_PACKAGES:
                add(dep, "main")
        return deps
    scope = "docs" if _in_docs(rel) or "doc" in name.lower() else (
        "dev" if any(w in name.lower() for w in ("dev", "test", "lint")) else "main")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            add(_req_name(line), scope)
    return deps


def _python(root: Path, files: list[str], f: _Findings) -> None:
    manifests = [r for r in files if r.rsplit("/", 1)[-1] in
                 ("pyproject.toml", "setup.py", "setup.cfg", "Pipfile")
                 or (r.rsplit("/", 1)[-1].startswith("requirements"))]
    for rel in manifests:
        name = rel.rsplit("/", 1)[-1]
        text = _read(root, rel, f.signals)
        if text is None:
            continue
        deps = _python_deps(rel, text, f)
        docs_only = _in_docs(rel) or (
            name.startswith("requirements") and bool(deps)
            and all(PYTHON_PACKAGES.get(d, ("", ""))[1] == "docs" or s == "docs"
                    for d, s in deps.items()))
        if name == "setup.py" and _in_docs(rel):
            docs_only = True
        f.language("python", rel, f"{name} describes a Python project")
        if not docs_only:
            f.code.append(rel)
        for dep, scope in deps.items():
            if dep not in PYTHON_PACKAGES:
                continue
            display, role = PYTHON_PACKAGES[dep]
            if scope == "dev" and role != "docs":
                continue
            if (scope == "docs" or docs_only) and role != "docs":
                continue
            f.framework(display, role, rel, f"{dep} ({name})")


def _javascript(root: Path, files: list[str], f: _Findings) -> None:
    if any(r.rsplit("/", 1)[-1] == "tsconfig.json" for r in files):
        rel = next(r for r in files if r.rsplit("/", 1)[-1] == "tsconfig.json")
        f.language("typescript", rel, "tsconfig.json configures TypeScript")
    for rel in (r for r in files if r.rsplit("/", 1)[-1] == "package.json"):
        text = _read(root, rel, f.signals)
        f.language("javascript", rel, "package.json describes a JavaScript/Node project")
        if text is None:
            continue
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            f.signals.append(Signal("note", "package.json", rel,
                                    f"not valid JSON ({exc}); dependencies not read"))
            f.code.append(rel)
            continue
        if not isinstance(data, dict):
            f.signals.append(Signal("note", "package.json", rel,
                                    "not a JSON object; dependencies not read"))
            continue
        deps: list[str] = []
        for key in ("dependencies", "devDependencies", "peerDependencies",
                    "optionalDependencies"):
            deps.extend(str(d) for d in _mapping(data.get(key)) if str(d) not in deps)
        known = [(d, *JS_PACKAGES[d]) for d in deps if d in JS_PACKAGES]
        docs_tool = next((disp for _, disp, role in known if role == "docs"), None)
        if docs_tool is None and not _in_docs(rel):
            f.code.append(rel)
        if "typescript" in deps:
            f.language("typescript", rel, "typescript is a dependency in package.json")
        for dep, display, role in known:
            f.framework(display, role, rel, f"{dep} (package.json)",
                        owned_by_docs=docs_tool or ("docs" if _in_docs(rel) else None))


def _rust(root: Path, files: list[str], f: _Findings) -> None:
    for rel in (r for r in files if r.rsplit("/", 1)[-1] == "Cargo.toml"):
        f.language("rust", rel, "Cargo.toml describes a Rust crate")
        f.code.append(rel)
        text = _read(root, rel, f.signals)
        if text is None:
            continue
        try:
            data = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, RecursionError) as exc:  # RecursionError: nesting
            f.signals.append(Signal("note", "Cargo.toml", rel,
                                    f"not valid TOML ({exc}); dependencies not read"))
            continue
        crates = list(_mapping(data.get("dependencies")))
        crates += list(_mapping(_mapping(data.get("workspace")).get("dependencies")))
        for target in _mapping(data.get("target")).values():
            crates += list(_mapping(_mapping(target).get("dependencies")))
        for crate in dict.fromkeys(str(c) for c in crates):
            if crate in RUST_CRATES:
                display, role = RUST_CRATES[crate]
                f.framework(display, role, rel, f"{crate} (Cargo.toml)")


def _go(root: Path, files: list[str], f: _Findings) -> None:
    for rel in (r for r in files if r.rsplit("/", 1)[-1] == "go.mod"):
        f.language("go", rel, "go.mod describes a Go module")
        f.code.append(rel)
        text = _read(root, rel, f.signals)
        if text is None:
            continue
        modules: list[str] = []
        block = False
        for raw in text.splitlines():
            line = raw.split("//", 1)[0].strip()
            if line.startswith("require") and line.endswith("("):
                block = True
            elif block and line == ")":
                block = False
            elif line.startswith("require "):
                parts = line.split()
                modules += parts[1:2]
            elif block and line:
                modules.append(line.split()[0])
        for module in modules:
            base = _GO_MAJOR.sub("", module)
            if base in GO_MODULES:
                display, role = GO_MODULES[base]
                f.framework(display, role, rel, f"{module} (go.mod)")


def _docs_sites(root: Path, files: list[str], f: _Findings) -> None:
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


def _notebooks(files: list[str], f: _Findings) -> None:
    books = [r for r in files if r.endswith(".ipynb")]
    outside = [r for r in books if not _in_docs(r)]
    if outside:
        shown = ", ".join(outside[:3]) + (f" and {len(outside) - 3} more" if len(outside) > 3
                                          else "")
        f.signals.append(Signal("notebooks", "jupyter", outside[0],
                                f"{plural(len(outside), 'Jupyter notebook')}: {shown}"))
        f.research.append(plural(len(outside), "notebook"))
    if len(books) > len(outside):
        f.signals.append(Signal("docs", "notebooks", next(r for r in books if _in_docs(r)),
                                "notebooks in the docs (documentation, not research)"))
    for rel in files:
        name = rel.rsplit("/", 1)[-1]
        if name in ("dvc.yaml", "MLproject"):
            f.signals.append(Signal("research", name, rel, f"{name} defines an ML/data pipeline"))
            f.research.append(name)


def _kiro(root: Path, f: _Findings) -> None:
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


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: Any) -> Iterable[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


# ------------------------------------------------------------------ verdict


def detect_project(path: Path | str) -> Detection:
    """What kind of project ``path`` holds, the signals behind it and a template name."""
    root = Path(path)
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a directory", hint="give the project's directory")
    files, truncated = _scan(root)
    f = _Findings()
    _kiro(root, f)
    _python(root, files, f)
    _javascript(root, files, f)
    _rust(root, files, f)
    _go(root, files, f)
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
