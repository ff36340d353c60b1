"""What many tests share: a clean environment, the "needs X" marks, the tiny run, the servers
(PostgreSQL, ``mlflow server``) and ways to run and signal ``vae-train`` processes."""
