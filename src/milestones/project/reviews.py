"""Reviews and notes.
"""

from __future__ import annotations

from typing import Any

from .. import model as md
from ..errors import (
    InvalidInput,
    InvalidTransition,
)
from ..model import refs
from .constants import SCHEMA
from .specs import Specs


class Reviews(Specs):
    """Reviews of milestones, notes."""

    def review(self, ref: str, phase: str, decision: str,
               comment: str | None = None) -> dict[str, Any]:
        """Record a gate decision on a Kiro milestone's phase; returns the gate's state."""
        md.check_choice(phase, md.KIRO_GATED, "phase")
        md.check_choice(decision, md.KIRO_DECISIONS, "decision")
        note = md.check_text(comment or "", "comment", limit=5000) or None
        with self.transaction() as tx:
            mid = refs.resolve_milestone(ref, tx.snaps)
            m = tx.milestone(mid)
            if m.workflow != "kiro" or m.kiro is None:
                raise InvalidInput(f"{mid} does not use the Kiro workflow",
                                   hint="import a spec with `milestone import kiro PATH`")
            kiro = dict(m.kiro)
            for earlier in md.KIRO_GATED[: md.KIRO_GATED.index(phase)]:
                if md.gate_state(kiro, earlier)["status"] != "approved":
                    raise InvalidTransition(f"cannot review {phase} of {mid}: the {earlier} "
                                            "gate is not approved yet",
                                            hint=f"review {earlier} first")
            role = self.role_of()
            gate = md.gate_state(kiro, phase)
            if role not in gate["required"]:
                from ..errors import PermissionDenied

                raise PermissionDenied(
                    f"{self.actor} ({role or 'not a team member'}) cannot review the {phase} "
                    f"gate of {mid}", hint=f"it needs: {', '.join(gate['required'])}")
            if decision == "approve" and gate["status"] == "approved":
                raise InvalidTransition(f"the {phase} gate of {mid} is already approved",
                                        hint="nothing to do")
            before = m.to_dict()
            kiro["reviews"] = [*(kiro.get("reviews") or []), {
                "phase": phase, "decision": decision, "actor": self.actor, "role": role,
                "comment": note, "timestamp": tx.now}]
            m.kiro = kiro
            tx.touch(m)
            after = md.gate_state(kiro, phase)
            tx.record("review_recorded", m, before, phase=phase, decision=decision, role=role,
                      comment=note, gate=after["status"])
            if after["status"] == "approved":
                opened = m.to_dict()
                tx.record("gate_opened", m, opened, phase=phase,
                          next_phase=md.kiro_phase(m))
            return after

    def pending_reviews(self) -> dict[str, Any]:
        """Gates that wait for the caller's role, phase by phase."""
        role = self.role_of()
        rows = []
        for mid, snap in sorted(self.state().milestones.items()):
            m = md.Milestone.from_snapshot(snap)
            if m.workflow != "kiro" or m.kiro is None or m.status in md.CLOSED_MILESTONE:
                continue
            phase = md.kiro_phase(m)
            if phase == "execute":
                continue
            gate = md.gate_state(m.kiro, phase)
            if role in gate["waiting_for"]:
                rows.append({"ref": mid, "title": m.title, "spec": m.kiro.get("spec")} | gate)
        return {"schema": SCHEMA, "role": role, "actor": self.actor, "pending": rows}

    def note(self, text: str) -> None:
        text = md.check_text(text, "note", required=True, limit=5000)
        with self.transaction() as tx:
            tx.record("note_added", None, None, mid=tx.current, data={"note": text})
            tx.note = text
