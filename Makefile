# Two commands on a fresh machine: `make run` serves the shipped models, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Where `make run` listens and what it serves: `make run PORT=8001`, or VAE_PORT=8001 make run (likewise HOST and
# VAE_HOST, MODELS_DIR and VAE_MODELS_DIR).
HOST ?= $(or $(VAE_HOST),127.0.0.1)
PORT ?= $(or $(VAE_PORT),8000)
MODELS_DIR ?= $(or $(VAE_MODELS_DIR),models)
# Stamps: what serving needs (pyproject's base dependencies, no torch), what training needs (the train extra), and
# everything (train and test extras).
SERVE_STAMP := $(VENV)/.installed-serve
TRAIN_STAMP := $(VENV)/.installed-train
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
# DEVICE=auto trains on the GPU when PyTorch sees one; DEVICE=cpu is how the shipped models were made (bit for bit).
DEVICE ?= auto
# --force: these targets replace the shipped models in place (a plain train refuses an existing model folder).
TRAIN_ANY := $(PY) -m training train --device $(DEVICE) --force
TRAIN := $(TRAIN_ANY) --dataset mnist
SHIPPED_MODELS := fashion-cvae mnist-ae mnist-beta-vae mnist-cvae mnist-dae mnist-vae

.PHONY: setup setup-serve setup-train run test lint bench readme-images models ood-report mnist-ae mnist-vae mnist-beta-vae mnist-cvae mnist-dae fashion-cvae clean image image-test

NEED_PYTHON := 3.11
# A venv an older Python made (or whose Python is gone) cannot be used: it is removed here and made again below.
ifneq ($(wildcard $(VENV)/pyvenv.cfg),)
ifneq ($(shell $(PY) -c 'import sys; print(sys.version_info >= (3, 11))' 2>/dev/null),True)
$(info make: $(VENV) was made by a Python older than $(NEED_PYTHON) (or one no longer there); making it again)
$(shell rm -rf $(VENV))
endif
endif

# pip runs without --quiet: a first install downloads a few hundred MB, and its progress shows.
$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "make: Python $(NEED_PYTHON) or newer is needed, and $(PYTHON) is $$($(PYTHON) --version 2>&1 || echo missing);" \
			"install one and run make PYTHON=python$(NEED_PYTHON) (or the path to it)" >&2; exit 1; }
	@echo "make: creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

# `make run`: the service's own dependencies only (fastapi, uvicorn, onnxruntime-gpu, ...); no torch, no test tools.
setup-serve: $(SERVE_STAMP)

$(SERVE_STAMP): pyproject.toml constraints.txt | $(PY)
	@echo "make: installing what serving needs (pyproject's base dependencies, no torch) into $(VENV)"
	$(PY) -m pip install -c constraints.txt -e . -e ./client
	touch $@

# Training only (`python -m training ...`): the train extra (torch, onnx, ...), no test tools.
setup-train: $(TRAIN_STAMP)

$(TRAIN_STAMP): pyproject.toml constraints.txt | $(PY)
	@echo "make: installing what training needs (the train extra: torch, onnx, ...) into $(VENV)"
	$(PY) -m pip install -c constraints.txt -e '.[train]' -e ./client
	touch $@ $(SERVE_STAMP)

# `make test`, `make models` and the rest: the train extra (torch, onnx, ...) and the test extra (pytest, ruff, ...).
setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt | $(PY)
	@echo "make: installing the train and test extras (torch, onnx, pytest, ruff, mypy, ...) into $(VENV)"
	$(PY) -m pip install -c constraints.txt -e '.[train,test]' -e ./client
	touch $@ $(SERVE_STAMP) $(TRAIN_STAMP)

run: setup-serve
	$(PY) -m service --host $(HOST) --port $(PORT) --models-dir $(MODELS_DIR)

test: setup lint
	$(PY) -m pytest

# Lint, format and type checks of the whole repository (part of `make test`; mypy's files: pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Raw onnxruntime vs the service (batching on and off) vs an empty endpoint; writes BENCHMARKS.md (+ .json).
bench: setup $(BENCH_STAMP)
	$(PY) -m bench.run --out BENCHMARKS.md $(BENCH_ARGS)

# The bench extra (LitServe, py-spy) on top of setup's extras.
$(BENCH_STAMP): pyproject.toml constraints.txt $(STAMP)
	$(PY) -m pip install -c constraints.txt -e '.[train,test,bench]'
	touch $@

# The latent-space pictures of docs/service.md (docs/latent/), asked of the service on the shipped models, and the
# playground's screenshot (docs/playground.png, from its browser test; needs /usr/bin/chromium: .ci/chromium.sh).
readme-images: setup
	$(PY) -m docs.latent_images
	VAE_WRITE_SCREENSHOTS=1 $(PY) -m pytest -q tests/integration/test_playground.py -k drawn

# Retrains and exports every shipped default model (each a few minutes on 2 CPU cores), on the GPU when present.
models: mnist-ae mnist-vae mnist-beta-vae mnist-cvae mnist-dae fashion-cvae
	$(MAKE) ood-report

# /score's out-of-distribution test measured through the service on every shipped model, into the manifests; then
# paste the tables printed by `python -m training.catalog models` into the README.
ood-report: setup
	$(PY) -m training.ood_report $(addprefix models/,$(SHIPPED_MODELS)) --write

mnist-ae: setup
	$(TRAIN) --kind ae --out models/mnist-ae \
		--description 'Deterministic autoencoder of 28x28 MNIST digits (32-d code): the baseline; samples from a mixture fitted to its codes.' $(TRAIN_ARGS)
# 16 latent dimensions, not 32: at 32 nine of them collapsed to the prior (KL ~0) and the bound was no better
# (held-out -log p(x) 93.94 at 32, 93.91 at 16), and the fitted prior has half the dimensions to cover.
mnist-vae: setup
	$(TRAIN) --kind vae --latent-dim 16 --out models/mnist-vae \
		--description 'VAE of 28x28 MNIST digits (16-d latent, Bernoulli pixels): the default model for encode, decode, sample and score.' $(TRAIN_ARGS)
mnist-beta-vae: setup
	$(TRAIN) --kind vae --beta 4 --out models/mnist-beta-vae \
		--description 'beta-VAE (beta 4) of 28x28 MNIST digits (32-d latent): smoother, more disentangled codes, blurrier images.' $(TRAIN_ARGS)
mnist-cvae: setup
	$(TRAIN) --kind cvae --out models/mnist-cvae \
		--description 'Conditional VAE of 28x28 MNIST digits (32-d latent), labels 0-9: generates a chosen digit.' $(TRAIN_ARGS)
mnist-dae: setup
	$(TRAIN) --kind ae --corrupt mask:0.3 --hidden 128 --out models/mnist-dae \
		--description 'Denoising autoencoder of 28x28 MNIST digits (32-d code): trained to restore digits with 30% of pixels masked.' $(TRAIN_ARGS)
# Fashion-MNIST from Debian's dataset-fashion-mnist; held out: 1,000 of its own 10,000 test images. Gaussian pixels:
# the clothes are grey, and a binarization loses the zippers and collars that tell a coat from a pullover. No random
# shifts: the garments are centred, and shifted copies blur what the decoder draws. Class guidance (docs/training.md):
# samples of a coat keep the zip that tells it from a pullover.
fashion-cvae: setup
	$(TRAIN_ANY) --dataset fashion --test-fraction 0.1 --kind cvae --likelihood gaussian --augment-shift 0 --epochs 20 \
		--warmup-epochs 3 --class-guidance 100 --out models/fashion-cvae \
		--description 'Conditional VAE of 28x28 Fashion-MNIST clothing (32-d latent), labels by class name: generates a chosen kind of garment.' $(TRAIN_ARGS)

clean:
	rm -rf $(VENV) checkpoints .pytest_cache

# The container image (docs/container.md). `make image` builds it from the Dockerfile's normal base
# (python:3.11-slim-bookworm + onnxruntime-gpu's CUDA 13 / cuDNN 9 pip libraries); VARIANT=cpu leaves CUDA out.
CONTAINER_ENGINE ?= docker
IMAGE_NAME ?= vae-service
VARIANT ?= gpu
IMAGE_TAG ?= $(if $(filter cpu,$(VARIANT)),cpu,latest)
BASE_IMAGE ?=
# A CA bundle for pip inside the build (networks that intercept TLS), passed as a build secret, never stored.
CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
comma := ,

image:
	$(CONTAINER_ENGINE) build --build-arg VARIANT=$(VARIANT) \
		$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
		$(if $(CA_BUNDLE),--secret id=ca$(comma)src=$(CA_BUNDLE)) \
		$(if $(findstring podman,$(CONTAINER_ENGINE)),--format=docker) \
		-t $(IMAGE_NAME):$(IMAGE_TAG) .

# Builds the CPU variant FROM a local debootstrapped Debian base with podman (no registry, no Docker engine
# needed), runs it and checks it from the host. Installs podman/buildah/debootstrap itself (root, apt).
# The base is cached in podman's storage and under $(BASE_CACHE) between runs.
LOCAL_BASE ?= localhost/vae-base:bookworm
image-test: export BASE_CACHE ?= /var/tmp/vae-service
image-test: export CONTAINERS_CONF ?= $(CURDIR)/docker/podman/containers.conf

image-test: setup
	@start=$$(date +%s); \
	docker/local-base.sh $(LOCAL_BASE) && \
	$(PY) docker/image_test.py --base $(LOCAL_BASE); rc=$$?; \
	echo "make image-test: $$(( $$(date +%s) - start )) s in all (exit $$rc)"; exit $$rc
