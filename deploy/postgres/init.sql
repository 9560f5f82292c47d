-- Run once by the postgres image (docker-entrypoint-initdb.d) when it initialises an empty data volume,
-- as POSTGRES_USER, who then owns the new database. POSTGRES_DB creates `airflow` (metadata DB and
-- Celery result backend); MLflow's backend store gets a database of its own, and so do MLflow's users and roles
-- (its basic-auth app).
-- On an existing volume this file is not run again: `docker compose exec postgres createdb -U "$POSTGRES_USER" mlflow`
-- (and the same for mlflow_auth).
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
