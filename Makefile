# cnnlab — the two commands of the README, and their set-up.
#   make demo   set up, get Fashion-MNIST, train LeNet-5, evaluate, print test accuracy
#   make test   set up, lint (ruff), run the test suite
# Set-up runs once: the stamp below is rebuilt only when pyproject.toml changes
# (or when this checkout is new to the venv, since the install is editable).

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cnnlab-installed-$(shell printf '%s' "$(CURDIR)" | cksum | cut -d' ' -f1)
FMNIST_DEB := /usr/share/datasets/fashion-mnist
DEMO_DIR ?= runs/demo
DEMO_EPOCHS ?= 12
PYTEST_ARGS ?= -n 2 -q
# A package index for torch and torchvision, e.g. PyTorch's CPU-only wheels (no CUDA libraries,
# a few hundred MB instead of about 4 GB on Linux):  make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Empty (the default): they come from your usual pip index with everything else.
TORCH_INDEX ?=

.PHONY: setup data demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet --index-url $(TORCH_INDEX) torch torchvision)
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.cnnlab-installed-*
	@touch $@

# Fashion-MNIST: Debian's dataset-fashion-mnist where apt exists and the files are missing.
# Without apt (or root), the loader still looks in CNNLAB_DATA and ~/.cache/cnnlab, then tries
# the official download, and says how to get the data if all of that fails.
data:
	@if [ ! -f $(FMNIST_DEB)/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  echo "installing Debian's dataset-fashion-mnist ..."; \
	  ($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	    || echo "apt could not install dataset-fashion-mnist; cnnlab will look elsewhere"; \
	fi

demo: setup data
	$(VENV)/bin/cnnlab train lenet5 --data fashion-mnist --epochs $(DEMO_EPOCHS) --seed 0 --out $(DEMO_DIR) --overwrite
	$(VENV)/bin/cnnlab evaluate $(DEMO_DIR)

test: setup data lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

bench: setup
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis
