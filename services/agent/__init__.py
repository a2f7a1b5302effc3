"""A self-hosted deployment agent: `cairn agent --url … --pool-token …`."""
