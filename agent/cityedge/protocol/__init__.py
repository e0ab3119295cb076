"""The wire between a gateway and the command post: signed envelopes, keys, the
topic table and trust updates (docs/protocol.md). Imports only the SDK, so the
command post uses it without any gateway code."""
