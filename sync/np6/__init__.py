"""The NP6 client: session, calls, answer classes, retry policy, throttle."""
