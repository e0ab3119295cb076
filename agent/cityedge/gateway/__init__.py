"""The gateway: typed config, the supervised runtime, pipeline, outbox, uplink,
commands and policy, overrides, lighting, the technician socket, page and
metrics, diagnostics. Reaches drivers only through `registry`."""
