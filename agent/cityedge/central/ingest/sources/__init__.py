"""Where ingest reads: Mosquitto (embedded default), RabbitMQ, NATS JetStream."""
