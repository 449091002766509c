"""The REST job API of the LEAP training service (FastAPI)."""
