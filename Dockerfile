# One image for every process; the command picks which one runs (compose.yaml sets it):
#   api (default)  python -m api
#   realtime       python -m realtime
#   worker         dramatiq workers.main:setup --skip-logging ...
#   admin          sovd-admin create-user NAME --role admin --password-stdin
#   bridge, agent  python -m workers.vehicle_bridge, python -m agent (MQTT vehicles)
#   gateway        python -m gateway  (the test gRPC vehicle gateway, docs/grpc.md)
# Only the runtime dependencies from pyproject.toml are installed, no test or lint groups.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, in their own layer, so a code change does not reinstall them.
COPY pyproject.toml README.md* ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY api ./api
COPY common ./common
COPY realtime ./realtime
COPY workers ./workers
COPY cli ./cli
COPY agent ./agent
COPY gateway ./gateway
RUN pip install .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    SOVD_API_HOST=0.0.0.0 \
    SOVD_REALTIME_HOST=0.0.0.0
RUN groupadd --system --gid 10001 sovd \
    && useradd --system --uid 10001 --gid sovd --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sovd
# Same path as in the build stage: the console scripts' shebangs point into it.
COPY --from=build /opt/venv /opt/venv
# Empty and read-only for the app user: the code runs from site-packages, not from here.
WORKDIR /app
USER 10001:10001
EXPOSE 8000 8001
CMD ["python", "-m", "api"]
