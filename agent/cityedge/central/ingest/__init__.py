"""`cityedge central ingest`: gateway messages from a durable source into the city's database.

A source (Mosquitto, RabbitMQ, NATS JetStream) hands batches of (topic, payload);
`decode` verifies each through the command post's verifier; a store (SQLite,
PostgreSQL) writes readings, events and results together with the sequence
bookkeeping in one transaction; only then is the batch acknowledged to the source.
Dedupe and holes live in the database, so any number of workers and restarts agree.
"""
