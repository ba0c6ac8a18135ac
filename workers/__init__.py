"""Task handlers, their in-process executor and the Celery app that runs them distributed."""
