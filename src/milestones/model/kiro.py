"""Kiro spec gates on a milestone: settings, gate state, the phase and its progress.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .checks import check_choice
from .records import Milestone

# ------------------------------------------------------------ kiro workflow

KIRO_PHASES = ("requirements", "design", "tasks", "execute")
KIRO_GATED = ("requirements", "design", "tasks")
KIRO_DECISIONS = ("approve", "reject", "request_changes")
KIRO_DEFAULTS: dict[str, Any] = {
    "policy": "optional",  # optional: findings are advice; mandatory: they are enforced
    "enforcement": "flexible",  # flexible: warn; strict: refuse
    "weights": {"requirements": 10, "design": 15, "tasks": 10, "execute": 65},
    "approvers": {"requirements": ["owner"], "design": ["owner"], "tasks": ["owner"]},
}


def kiro_settings(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid by each layer in turn (project config, then the milestone)."""
    out: dict[str, Any] = {
        "policy": KIRO_DEFAULTS["policy"], "enforcement": KIRO_DEFAULTS["enforcement"],
        "weights": dict(KIRO_DEFAULTS["weights"]),
        "approvers": {k: list(v) for k, v in KIRO_DEFAULTS["approvers"].items()},
    }
    for layer in layers:
        if not layer:
            continue
        for key in ("policy", "enforcement"):
            if layer.get(key):
                out[key] = layer[key]
        for key in ("weights", "approvers"):
            if isinstance(layer.get(key), Mapping):
                out[key].update(layer[key])
    check_choice(out["policy"], ("optional", "mandatory"), "kiro policy")
    check_choice(out["enforcement"], ("flexible", "strict"), "kiro enforcement")
    return out


def gate_state(kiro: Mapping[str, Any], phase: str) -> dict[str, Any]:
    """A gate's status from the reviews: every required role must approve after the
    last rejection or change request; any rejection blocks it with its feedback."""
    required = list((kiro.get("approvers") or {}).get(phase) or ["owner"])
    approved: set[str] = set()
    status, feedback = "pending", None
    for r in kiro.get("reviews") or []:
        if r.get("phase") != phase:
            continue
        if r.get("decision") == "approve":
            approved.add(str(r.get("role")))
            if status in ("rejected", "changes_requested"):
                status = "pending"
        else:
            approved.clear()
            status = "rejected" if r.get("decision") == "reject" else "changes_requested"
            feedback = r.get("comment")
    waiting = [role for role in required if role not in approved]
    if not waiting and status == "pending":
        status = "approved"
    return {"phase": phase, "status": status, "required": required,
            "approved_by": sorted(approved & set(required)), "waiting_for": waiting,
            "feedback": feedback}


def kiro_phase(m: Milestone) -> str:
    """The phase the spec is in: the first gate not yet approved, else execute."""
    kiro = m.kiro or {}
    for phase in KIRO_GATED:
        if gate_state(kiro, phase)["status"] != "approved":
            return phase
    return "execute"
