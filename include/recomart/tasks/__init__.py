"""Task bodies: what each DAG task does, in plain Python (no Airflow import), one module per DAG.

Each function takes the settings and the warehouse DSN (from the Airflow connection) explicitly and
returns a small JSON-safe summary, which the DAG publishes as XCom and asset-event ``extra``.
``dags/<dag_id>.py`` imports only :mod:`recomart.tasks.<dag_id>`.
"""
