"""Request and reply bodies, one module per resource, kept apart from the tables so that
the API's contract does not follow the database schema's every change."""
