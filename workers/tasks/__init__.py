"""One thin module per task type: read inputs from the store, do the work, write the artifact."""
