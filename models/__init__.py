"""PyTorch models and image operators. Imports nothing of the queue, database or store."""
