"""The HTTP API and web dashboard (`frameq api`): an entry point beside the CLI."""
