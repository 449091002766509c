"""The job domain of the LEAP training service, shared by the API and the workers.

SQLAlchemy models, the job state machine (the only code that changes a job's state) and
its events live here, outside ``leap_core``, so the library never depends on a database.
"""
