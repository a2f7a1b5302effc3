"""The `cairn` command: it wires the services and the gateway into processes."""
