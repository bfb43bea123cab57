# np6-sync as a container: `np6-sync` is the entrypoint, run as a non-root user.
#
# Mount points:  /jobs    job files (read-only is fine)
#                /config  np6.yaml settings (read-only; found as config/np6.yaml from /)
#                /data    source files (read-only)
#                /state   state, journal, lock, history, rejects (writable, persistent)
# The key comes from the environment (NP6_API_KEY), never from a file in the image.
#
# Object-storage backends: EXTRAS names the package extras to install (default s3):
#   docker build -t np6-sync .
#   docker build --build-arg EXTRAS=s3,gcs,azure,http -t np6-sync .
# EXTRAS= (empty) builds an image that reads local files only.

# Build stage: the only stage with pip caches and build tools.
FROM python:3.11.11-slim-bookworm AS build
ARG EXTRAS=s3
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sync ./sync
RUN python -m venv /opt/np6-sync \
    && /opt/np6-sync/bin/pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" \
    && /opt/np6-sync/bin/np6-sync --version

# Final stage: the virtual environment and nothing else.
FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="np6-sync" \
      org.opencontainers.image.description="Keep NP6 segments equal to CSV/Parquet lists"
COPY --from=build /opt/np6-sync /opt/np6-sync
RUN useradd --create-home --uid 10001 np6 \
    && mkdir -p /jobs /config /data /state \
    && chown 10001:10001 /state
ENV PATH=/opt/np6-sync/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
VOLUME ["/state"]
USER 10001
WORKDIR /
ENTRYPOINT ["np6-sync"]
CMD ["--help"]
