-- Run once by the postgres image on an empty volume: MLflow keeps its runs in a database of
-- its own next to the job database.
CREATE DATABASE mlflow OWNER leap;
