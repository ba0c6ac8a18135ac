"""frameq: the command line, which wires the orchestrator, the store and the workers together."""
