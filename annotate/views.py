"""Worker pages (placeholder until the page helper lands)."""
