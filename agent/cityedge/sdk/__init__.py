"""The driver SDK: what every part of cityedge shares and a protocol driver needs.

Plain data types (`model`), the `Driver` protocol (`driver`), typed TOML tables
and their one error format (`tables`, `problems`), the log set-up (`logs`) and
the pieces of infrastructure that exist once (`backoff`, …). Imports only the
standard library and structlog, so a driver written against it drags in nothing
of the gateway.
"""

__version__ = "0.1.0"
