"""The API's OpenAPI 3.1 description, served at ``/openapi.json`` (kept by hand: a
test checks it names every route of the app)."""

from __future__ import annotations

from typing import Any


def _error(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {
        "schema": schema or {"type": "object"}}}}


def _q(name: str, desc: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": desc,
            "schema": {"type": kind}}


def _p(name: str, desc: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": desc,
            "schema": {"type": "string"}}


TASK = [_p("mid", "milestone id or number (3, milestone-003)"),
        _p("tid", "task id or number (2, task-2)")]
ERRORS = {"401": _error("an access token is needed (non-local bind)"),
          "403": _error("refused: no token or CSRF token, or the actor's role"),
          "404": _error("no such milestone or task"),
          "409": _error("the change breaks a rule (transition, dependencies)"),
          "413": _error("request body over 64 KB"),
          "400": _error("the body is not valid JSON"),
          "422": _error("a field is missing, unknown or of the wrong type")}


def _write(action: str, summary: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "operationId": f"task_{action}", "parameters": TASK,
        "security": [{"bearer": []}, {"csrf": []}],
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, **body}}}},
        "responses": {"200": _ok("the task after the change (as `show --json`)"),
                      **ERRORS}}}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "milestone dashboard API", "version": "1",
             "description": "Read and change a milestone project: the same data as the "
                            "CLI's --json, the same checks as its writes."},
    "paths": {
        "/api/milestones": {"get": {
            "summary": "Every milestone (as `list --all --json`)",
            "operationId": "milestones", "responses": {"200": _ok("milestones")}}},
        "/api/milestones/{mid}": {"get": {
            "summary": "One milestone with its tasks, critical path and feasibility "
                       "(as `show REF --json`)", "operationId": "milestone",
            "parameters": [TASK[0]],
            "responses": {"200": _ok("the milestone"), "404": ERRORS["404"]}}},
        "/api/tasks": {"get": {
            "summary": "Tasks of every milestone, filtered", "operationId": "tasks",
            "parameters": [_q("status", "todo, in_progress, blocked, done or skipped"),
                           _q("assignee", "exactly this assignee"),
                           _q("q", "text in the title or ref")],
            "responses": {"200": _ok("tasks and their total"), "422": ERRORS["422"]}}},
        "/api/tasks/{mid}/{tid}": {"get": {
            "summary": "One task (as `show M/T --json`)", "operationId": "task",
            "parameters": TASK,
            "responses": {"200": _ok("the task"), "404": ERRORS["404"]}}},
        "/api/tasks/{mid}/{tid}/start": _write(
            "start", "Start the task", {"properties": {"force": {"type": "boolean"}}}),
        "/api/tasks/{mid}/{tid}/done": _write(
            "done", "Complete the task", {"properties": {"force": {"type": "boolean"}}}),
        "/api/tasks/{mid}/{tid}/block": _write(
            "block", "Block the task with a reason",
            {"properties": {"reason": {"type": "string"}}, "required": ["reason"]}),
        "/api/tasks/{mid}/{tid}/assign": _write(
            "assign", "Assign the task (null: unassign)",
            {"properties": {"assignee": {"type": ["string", "null"]}},
             "required": ["assignee"]}),
        "/api/tasks/{mid}/{tid}/comment": _write(
            "comment", "Comment on the task (a note naming it, as `milestone note`)",
            {"properties": {"text": {"type": "string"}}, "required": ["text"]}),
        "/api/events": {"get": {
            "summary": "The event log, oldest first, paged by event id",
            "operationId": "events",
            "parameters": [_q("after", "events after this id (default 0)", "integer"),
                           _q("limit", "at most this many (1-1000, default 200)", "integer"),
                           _q("milestone", "of this milestone"), _q("actor", "by this actor"),
                           _q("type", "of this event type (repeatable)")],
            "responses": {"200": _ok("events and next_after (null at the end)"),
                          "422": ERRORS["422"]}}},
        "/api/events/stream": {"get": {
            "summary": "Server-Sent Events: every new event, its event id as the SSE id; "
                       "Last-Event-ID (or ?after=) resumes after that id",
            "operationId": "event_stream",
            "parameters": [{"name": "Last-Event-ID", "in": "header", "required": False,
                            "schema": {"type": "integer"}},
                           _q("after", "resume after this event id", "integer")],
            "responses": {"200": {"description": "text/event-stream",
                                  "content": {"text/event-stream": {}}}}}},
        "/api/agents": {"get": {
            "summary": "Registered agents, what each holds, recent failures",
            "operationId": "agents", "responses": {"200": _ok("agents")}}},
        "/api/analytics": {"get": {
            "summary": "The project's analytics: what `milestone analytics --json` prints",
            "operationId": "analytics",
            "parameters": [_q("since", "only since this ISO date or date-time", "string")],
            "responses": {"200": _ok("throughput, cycle and lead time, accuracy, blockers, "
                                     "work in progress, forecasts"),
                          "422": ERRORS["422"]}}},
        "/api/analytics/{mid}": {"get": {
            "summary": "One milestone's analytics: `milestone analytics ID --json`",
            "operationId": "milestone_analytics",
            "parameters": [{"name": "mid", "in": "path", "required": True,
                            "schema": {"type": "string"}},
                           _q("since", "only since this ISO date or date-time", "string")],
            "responses": {"200": _ok("the milestone's analytics"), "404": ERRORS["404"],
                          "422": ERRORS["422"]}}},
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "the access token printed at start-up (non-local "
                                      "binds); /login?token= sets it as a cookie"},
            "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                     "description": "the ms_csrf cookie's value (same-origin pages)"}},
        "schemas": {"Error": {"type": "object", "properties": {
            "schema": {"type": "integer"},
            "error": {"type": "object", "properties": {
                "status": {"type": "integer"}, "kind": {"type": "string"},
                "message": {"type": "string"}, "hint": {"type": ["string", "null"]}}}}}},
    },
}
