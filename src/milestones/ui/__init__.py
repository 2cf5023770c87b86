"""Renderers: ``simple`` (plain ASCII), ``rich`` (terminal), JSON is the view data itself."""
