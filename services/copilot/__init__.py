"""The copilot service: conversations answered by skills over live data."""
