"""Renderers: ``simple`` (plain ASCII), ``rich`` (terminal), JSON is the view data itself."""


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 task``, ``2 tasks``, ``0 tasks`` (``many`` for an irregular plural)."""
    return f"{n} {word if n == 1 else many or word + 's'}"
