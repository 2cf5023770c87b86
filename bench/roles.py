"""Roles and start-up: a read must not pay for the access checks.

Run it with ``python bench/roles.py [--runs N] [--base SRC]`` from the project's
virtualenv.

It builds a project of 25 milestones x 10 tasks and times whole subprocess runs of
``milestone status`` and ``milestone list``, interleaved round by round:

* with no team (single-user, as today) and with a team of three (enforce_roles on),
  on this tree: a read resolves no identity and reads no team settings, so the two
  should be within noise of each other;
* with ``--base SRC`` (say, a checkout of the commit before roles, ``git archive
  BASE src | tar -x -C /tmp/base``), the same reads of the same projects on that
  tree (PYTHONPATH=SRC, the "base" columns): the start-up cost of the feature.

Medians in ms, the ratio to the first column, and the load average (a busy machine
makes every figure noisy: compare ratios, not absolutes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEAM = """\
team:
  enforce_roles: true
  members:
    - {name: ann@example.com, role: owner}
    - {name: bob@example.com, role: contributor}
    - {name: vic@example.com, role: viewer}
"""


def build(where: Path, team: bool) -> Path:
    from milestones.project import Project

    p, _ = Project.init(where, actor="ann@example.com", session_id="bench")
    p.plan_many([{"title": f"M{i}", "tasks": [{"title": f"t{j}"} for j in range(10)]}
                 for i in range(25)])
    if team:
        (where / ".milestones" / "config" / "config.yaml").write_text(TEAM)
    return where


def time_one(cwd: Path, args: list[str], src: str | None) -> float:
    env = dict(os.environ, MILESTONE_USER="vic@example.com")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if src:
        env["PYTHONPATH"] = src
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "milestones", "-C", str(cwd), *args], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - began) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--base", default=None, help="src/ of the tree to compare with")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain = build(Path(tmp) / "plain", team=False)
        team = build(Path(tmp) / "team", team=True)
        cases = [("no team", plain, None), ("team", team, None)]
        if opts.base:  # the same projects on the tree before: a team's config is parsed
            # there too (any config.yaml but the default one is), so compare like with like
            cases = [("base, no team", plain, opts.base), cases[0],
                     ("base, team", team, opts.base), cases[1]]
        for args in (["status"], ["list"]):
            for _name, cwd, src in cases:  # warm-up (bytecode caches)
                time_one(cwd, args, src)
            got: dict[str, list[float]] = {name: [] for name, _, _ in cases}
            for _ in range(opts.runs):
                for name, cwd, src in cases:
                    got[name].append(time_one(cwd, args, src))
            first = statistics.median(got[cases[0][0]])
            row = ", ".join(f"{name} {statistics.median(v):.1f} ms "
                            f"({statistics.median(v) / first:.2f}x)" for name, v in got.items())
            print(f"milestone {' '.join(args)}: {row}")
    print("load average:", ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
