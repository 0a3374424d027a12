"""Projects: small production systems built on dlkit (train, evaluate, export, serve)."""
