# Two commands on a fresh machine: `make run` serves the shipped models, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TRAIN := $(PY) -m training train --dataset mnist

.PHONY: setup run test models mnist-ae mnist-vae mnist-beta-vae mnist-cvae clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[train,test]'
	touch $@

run: setup
	$(PY) -m service --host 127.0.0.1 --port 8000 --models-dir models

test: setup
	$(PY) -m pytest

# Retrains and exports every shipped default model (each a few minutes on 2 CPU cores).
models: mnist-ae mnist-vae mnist-beta-vae mnist-cvae

mnist-ae: setup
	$(TRAIN) --kind ae --out models/mnist-ae $(TRAIN_ARGS)
mnist-vae: setup
	$(TRAIN) --kind vae --out models/mnist-vae $(TRAIN_ARGS)
mnist-beta-vae: setup
	$(TRAIN) --kind vae --beta 4 --out models/mnist-beta-vae $(TRAIN_ARGS)
mnist-cvae: setup
	$(TRAIN) --kind cvae --out models/mnist-cvae $(TRAIN_ARGS)

clean:
	rm -rf $(VENV) checkpoints .pytest_cache
