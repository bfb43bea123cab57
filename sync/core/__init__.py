"""Pure: keys, hashing, plan. No file, no network, no clock but a parameter."""
