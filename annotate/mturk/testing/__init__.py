"""Test tooling that speaks MTurk's protocol: ``endpoint`` (an in-memory MTurk over HTTP)."""
