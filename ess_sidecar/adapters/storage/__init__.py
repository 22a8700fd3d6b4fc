"""State stores: SQLite (embedded default) and in-memory (tests)."""
