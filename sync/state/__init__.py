"""What the segment holds: the state, its journal, lock and history, local or on S3."""
