# syntax=docker/dockerfile:1
# kubetasks base image: the operator, the in-pod worker and the dashboard, i.e.
# kubetasks[operator,dashboard] (the first stage builds the wheels of the package and of those
# extras' dependencies). Task images start
# FROM it and add their code (`COPY . /app` + `pip install`), then `kubetasks deploy --image`.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sdk ./sdk
COPY operator ./operator
RUN python -m pip install --no-cache-dir --upgrade pip==24.3.1 \
 && python -m pip wheel --no-cache-dir --wheel-dir /wheels ".[operator,dashboard]"

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index /wheels/*.whl \
 && rm -rf /wheels \
 && groupadd --system --gid 10001 kubetasks \
 && useradd --system --uid 10001 --gid kubetasks --home-dir /app --create-home kubetasks
WORKDIR /app
USER 10001:10001
ENTRYPOINT ["kubetasks"]
CMD ["--help"]
