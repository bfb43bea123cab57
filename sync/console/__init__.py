"""What an operator sees while a run goes: log lines (text or JSON) and progress."""
