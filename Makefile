# Two commands do all the set-up: `make demo` (the tiny toy-world reproduction) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-vbench ui sysdeps smoke clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel first, so that nothing below pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# System packages for the SLURM, browser and video tests (Debian; needs root, skipped otherwise).
sysdeps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; \
	  for p in slurm-wlm munge chromium chromium-driver ffmpeg; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	else echo "sysdeps: not root or no apt-get; SLURM/browser tests will say what is missing"; fi

demo: $(STAMP)
	$(BIN)/snakemake --profile local all

smoke: $(STAMP)
	$(BIN)/snakemake --profile local --config scale=smoke -- all

# --durations: the slowest tests in every log, to keep CI (40 minutes on two cores) in view.
test: $(STAMP) sysdeps
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -ra --durations=15 -m "not vbench" tests

# The real VBench run builds VBench's own 6 GB virtual environment (workflow/envs/vbench.txt): not in CI.
test-vbench: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -ra -m vbench tests

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///results/mlflow.db --host 127.0.0.1 --port 5000 --workers 1

clean-venv:
	rm -rf $(VENV)
