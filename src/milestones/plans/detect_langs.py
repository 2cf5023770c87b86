"""What a project's manifests say: one reader per ecosystem (Python, JavaScript, Rust, Go).

The tables of known packages and their roles, the Signal each finding becomes and the
Findings the readers (and ``detect``'s docs, notebook and Kiro checks) add to.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..storage import fsutil

MAX_FILE_BYTES = 2 * 1024 * 1024  # manifests bigger than this are not read
DOCS_DIRS = frozenset({"docs", "doc", "website", "documentation"})

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


# ----------------------------------------------------------------- reading


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


def in_docs(rel: str) -> bool:
    return "/" in rel and rel.split("/", 1)[0].lower() in DOCS_DIRS


# --------------------------------------------------------------- manifests


class Findings:
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


def _python_deps(rel: str, text: str, f: Findings) -> dict[str, str]:
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
    scope = "docs" if in_docs(rel) or "doc" in name.lower() else (
        "dev" if any(w in name.lower() for w in ("dev", "test", "lint")) else "main")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            add(_req_name(line), scope)
    return deps


def read_python(root: Path, files: list[str], f: Findings) -> None:
    manifests = [r for r in files if r.rsplit("/", 1)[-1] in
                 ("pyproject.toml", "setup.py", "setup.cfg", "Pipfile")
                 or (r.rsplit("/", 1)[-1].startswith("requirements"))]
    for rel in manifests:
        name = rel.rsplit("/", 1)[-1]
        text = _read(root, rel, f.signals)
        if text is None:
            continue
        deps = _python_deps(rel, text, f)
        docs_only = in_docs(rel) or (
            name.startswith("requirements") and bool(deps)
            and all(PYTHON_PACKAGES.get(d, ("", ""))[1] == "docs" or s == "docs"
                    for d, s in deps.items()))
        if name == "setup.py" and in_docs(rel):
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


def read_javascript(root: Path, files: list[str], f: Findings) -> None:
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
        deps: dict[str, None] = {}  # in order, each once (a list's `in` made this quadratic)
        for key in ("dependencies", "devDependencies", "peerDependencies",
                    "optionalDependencies"):
            deps.update(dict.fromkeys(str(d) for d in _mapping(data.get(key))))
        known = [(d, *JS_PACKAGES[d]) for d in deps if d in JS_PACKAGES]
        docs_tool = next((disp for _, disp, role in known if role == "docs"), None)
        if docs_tool is None and not in_docs(rel):
            f.code.append(rel)
        if "typescript" in deps:
            f.language("typescript", rel, "typescript is a dependency in package.json")
        for dep, display, role in known:
            f.framework(display, role, rel, f"{dep} (package.json)",
                        owned_by_docs=docs_tool or ("docs" if in_docs(rel) else None))


def read_rust(root: Path, files: list[str], f: Findings) -> None:
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


def read_go(root: Path, files: list[str], f: Findings) -> None:
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


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: Any) -> Iterable[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
