"""One job, or one fan-out group of jobs, top to bottom: the route its source takes
(``route``), the run (``run``), and the ways a run may go (``quick``, ``same_set``,
``fold``, ``fanout``, ``fallback``); ``runs`` is the one orchestrator every door calls."""
