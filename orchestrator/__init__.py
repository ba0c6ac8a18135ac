"""Jobs, tasks and recipes: the source of truth for what runs where. Never imports torch."""
