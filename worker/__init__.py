"""Celery workers of the LEAP training service: one training job per GPU."""
