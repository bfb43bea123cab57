"""Changing the segment: chunked PUTs with a checkpoint per acknowledged step (``push``),
and per-target removal with its look-ups of contact ids (``lookup``)."""
