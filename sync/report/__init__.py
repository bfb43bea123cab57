"""The run report as one value, and its renderings (table, JSON, Markdown)."""
