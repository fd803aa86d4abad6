# syntax=docker/dockerfile:1
# The VAE service: the service and vaeformat packages, their runtime dependencies and models/; nothing of training
# (no torch, no compilers). docs/container.md says how to build, run and deploy it.
#
#   docker build -t vae-service .                                   # GPU: onnxruntime-gpu + CUDA 13 / cuDNN 9 pip libs
#   docker build --build-arg VARIANT=cpu -t vae-service:cpu .       # CPU only: onnxruntime-gpu without CUDA libraries
#
# BASE_IMAGE needs python3 (>= 3.11) with the venv module. Every stage starts from it, so the venv built in the
# `deps` stage finds the same interpreter at the same path in the final one. CUDA comes from pip, not from the
# base: onnxruntime-gpu's `cuda` and `cudnn` extras pin the CUDA 13 / cuDNN 9 wheels it was built against, and
# the host's driver (libcuda) arrives with `--gpus all` / the NVIDIA device plugin.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Runtime dependencies in a venv: the big layer (CUDA libraries), rebuilt only when pyproject.toml changes.
FROM ${BASE_IMAGE} AS deps
# gpu: onnxruntime-gpu[cuda,cudnn]; cpu: onnxruntime-gpu alone, which runs on its CPU provider.
ARG VARIANT=gpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
SHELL ["/bin/bash", "-o", "pipefail", "-eu", "-c"]
WORKDIR /src
RUN python3 -m venv /opt/venv
# The list is read from pyproject.toml (one list to maintain). A CA bundle may come in as the build secret `ca`
# for networks that intercept TLS; pip uses it here and it is never stored in a layer.
COPY pyproject.toml docker/requirements.py ./
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    python3 requirements.py --variant "$VARIANT" > requirements.txt; \
    /opt/venv/bin/pip install --requirement requirements.txt

# The service package and the model-folder format it reads, as a wheel, in its own stage so that a code change
# leaves the deps layer alone. training/ is not in the build context (.dockerignore), so the wheel holds neither it
# nor torch.
FROM ${BASE_IMAGE} AS wheel
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
SHELL ["/bin/bash", "-o", "pipefail", "-eu", "-c"]
WORKDIR /src
RUN python3 -m venv /opt/build
COPY pyproject.toml README.md ./
COPY service/ service/
COPY vaeformat/ vaeformat/
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    /opt/build/bin/pip wheel --no-deps --wheel-dir /dist .

FROM ${BASE_IMAGE}
ARG VARIANT=gpu
LABEL org.opencontainers.image.title="vae-service" \
      org.opencontainers.image.description="VAE-family models served over HTTP on onnxruntime" \
      vae-service.variant="${VARIANT}"
SHELL ["/bin/bash", "-o", "pipefail", "-eu", "-c"]
# A numeric, non-root user: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --gid 10001 vae \
    && useradd --uid 10001 --gid vae --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vae
COPY --from=deps /opt/venv /opt/venv
# The pip NVIDIA wheels keep their libraries in site-packages/nvidia/*/lib, which the dynamic loader does not
# search and libonnxruntime_providers_cuda.so has no RPATH for: register those folders (none in the cpu variant).
RUN find /opt/venv/lib -path '*/site-packages/nvidia/*' -name 'lib*.so*' -printf '%h\n' \
        | sort -u > /etc/ld.so.conf.d/onnxruntime-nvidia.conf \
    && ldconfig
COPY docker/healthcheck.py /opt/vae/healthcheck.py
# The shipped models; mount another folder on /models (read-only is enough) to serve yours.
COPY models/ /models/
# Last, the layers that change most often and weigh least: the service itself. (COPY, not a bind mount from the
# wheel stage: buildah's layer cache does not see a bind mount's content and would keep a stale service.)
COPY --from=wheel /dist/ /tmp/dist/
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --disable-pip-version-check /tmp/dist/*.whl \
    && rm -rf /tmp/dist \
    && /opt/venv/bin/pip check --disable-pip-version-check \
    && /opt/venv/bin/python -c "import service.http.app, onnxruntime as o; print(o.__version__, o.get_available_providers())"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    VAE_HOST=0.0.0.0 \
    VAE_PORT=8000 \
    VAE_MODELS_DIR=/models
USER 10001:10001
WORKDIR /opt/vae
EXPOSE 8000
# Healthy = ready: every model loaded and warmed (GET /ready). start-period covers loading the models.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/vae/healthcheck.py", "/ready"]
# Exec form: the server is PID 1 and gets SIGTERM itself; uvicorn then stops accepting connections, lets
# in-flight requests finish, runs the shutdown (readiness 503) and exits 0.
STOPSIGNAL SIGTERM
CMD ["vae-serve"]
