"""cityedge: the agent of a smart city's field gateways."""

__version__ = "0.1.0"
