# np6-sync as a container: np6-sync is the entrypoint, run as a non-root user.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sync ./sync
RUN python -m venv /opt/np6-sync \
    && /opt/np6-sync/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
COPY --from=build /opt/np6-sync /opt/np6-sync
RUN useradd --create-home --uid 10001 np6 \
    && mkdir -p /jobs /config /data /state \
    && chown np6:np6 /state
ENV PATH=/opt/np6-sync/bin:$PATH \
    PYTHONUNBUFFERED=1
USER np6
WORKDIR /
ENTRYPOINT ["np6-sync"]
CMD ["--help"]
