"""Webhooks of organizations and stacks, hosted by the stacks process: the registry, the
delivery worker and the payload formats."""
