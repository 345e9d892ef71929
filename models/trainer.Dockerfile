# The retrain job's image (`rapport-trainer`): `rapport-models` with the shared library,
# for the chart's retrain CronJob (values `retrain:`). It reads the events topic and the
# profile store, and writes new versions into the model repository on the claim it
# mounts. MovieLens-100K ships in recbole's wheel (installed without its dependencies,
# as `make install` does), for `--with-public`. Build from the repository root:
#   docker build -f models/trainer.Dockerfile -t rapport-trainer .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CONSTRAINT=/src/constraints.txt \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY constraints.txt ./
COPY libs/common libs/common
COPY models/pyproject.toml models/README.md models/
COPY models/src models/src
RUN python -m venv /opt/rapport \
    && /opt/rapport/bin/pip install ./libs/common ./models \
    && /opt/rapport/bin/pip install --no-deps recbole \
    && /opt/rapport/bin/python -m compileall -q /opt/rapport/lib

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/rapport/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 rapport \
    && useradd --system --uid 10001 --gid rapport --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin rapport
COPY --from=build /opt/rapport /opt/rapport
USER 10001:10001
ENTRYPOINT ["rapport-models"]
