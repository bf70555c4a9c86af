# RecoMart runtime image: the official Airflow 3.3.2 image on Python 3.11 (the lock's Python),
# plus the project's fully pinned lock. The project itself is mounted at /opt/recomart by compose.
FROM apache/airflow:3.3.2-python3.11

ENV RECOMART_PROJECT_ROOT=/opt/recomart \
    PYTHONPATH=/opt/recomart/include \
    DO_NOT_TRACK=true \
    GX_ANALYTICS_ENABLED=false \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False \
    OMP_WAIT_POLICY=PASSIVE \
    OPENBLAS_THREAD_TIMEOUT=4

USER airflow
COPY --chown=airflow:root requirements.txt /opt/recomart/requirements.txt
RUN pip install --no-cache-dir --compile -r /opt/recomart/requirements.txt

# A copy of the code so the image also runs without the bind mount; compose mounts the live tree over it.
# .dockerignore keeps .state (secrets, data) and .env (passwords) out of the image.
COPY --chown=airflow:root . /opt/recomart
WORKDIR /opt/recomart
