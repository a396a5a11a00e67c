# The one image the chart runs: `streamgw serve` (gateway) and `streamgw-operator` (operator).
# Build: docker build -t stream-gateway:0.1.0 .   (not built in CI here: these machines have no
# Docker engine; tests/e2e/test_image_contract.py checks this file against the chart instead.)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY sgw_routes sgw_routes
COPY operator operator
RUN python -m pip install --no-cache-dir --prefix=/install '.[operator]'

FROM python:3.11-slim
COPY --from=build /install /usr/local
# Non-root, matching the chart's securityContext (runAsUser/runAsGroup 10001). The root filesystem
# is read-only in the pod; /tmp is an emptyDir.
RUN groupadd --system --gid 10001 sgw && useradd --system --uid 10001 --gid 10001 --no-create-home sgw
USER 10001:10001
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
EXPOSE 8080 9090
ENTRYPOINT ["streamgw"]
CMD ["serve"]
