"""The web console: server-rendered pages over the same services and rules as the REST API."""
