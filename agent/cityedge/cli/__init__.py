"""The `cityedge` executable: the composition root that mounts the gateway's, the
command post's and the demo's commands. Nothing imports it."""
