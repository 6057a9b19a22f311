"""Application logic: each service takes its collaborators as arguments (real adapters or fakes)."""
