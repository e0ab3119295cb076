"""The simulated street: a private broker and device simulators for the demo and the tests."""
