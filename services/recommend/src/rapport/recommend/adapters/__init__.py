"""The outside systems recommend talks to: Triton, and the catalogue file."""
