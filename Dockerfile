# The hub and platform image (docker-compose.yml). Firmware is flashed, not containerised.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY platform platform
COPY gateway-hub gateway-hub
COPY simulator simulator
COPY programs programs
COPY firmware firmware
COPY docs docs
RUN pip install --no-cache-dir . && useradd --create-home gridtokenx && mkdir /data && chown gridtokenx /data
USER gridtokenx
