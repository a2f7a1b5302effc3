"""The stacks service: projects, stacks with a stable id, and their tags."""
