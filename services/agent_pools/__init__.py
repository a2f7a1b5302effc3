"""The agent_pools service: agent pools, agents, deployment settings and deployment work."""
