"""Worker API (placeholder until the leasing helper lands)."""
