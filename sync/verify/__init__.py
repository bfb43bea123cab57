"""Reading NP6 back: before a run (``preflight``, and ``check``), and after it: the
segment's listing against the source (``listing``) and, in unicity mode, against the ids
the state knows (``ids``)."""
