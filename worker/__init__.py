"""Celery workers of the LEAP training service: one training job per GPU (or per CPU slot).

``tasks`` is the thin ``train`` task; ``runner`` leases the job row, trains and records;
``outcome`` says how a run ended (one except-ladder, a typed outcome, the record functions);
``lease`` fences every write by the lease; ``hooks`` are the job's hooks (MLflow, the job
row, cancellation); ``faults`` turns an error into a one-line reason and says which ones
are the infrastructure's; ``gpu`` pins devices; ``ranks`` and ``rank_job`` run a job of
several devices as child processes.
"""
