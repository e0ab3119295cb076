"""Where ingest writes: SQLite (embedded default) or PostgreSQL (a city), same semantics."""
