"""The gateway's commands for technicians: status, devices, read, write, check, keys, wipe."""
