# `make run` and `make test` bootstrap .venv themselves (pip only) and then run.
# The venv is installed from requirements.lock (every package pinned, with hashes); `make lock`
# refreshes the lock from pyproject.toml's ranges and requirements-pins.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
LOCK_VENV := .lock-venv
PIP_TOOLS := pip-tools==7.6.2

.PHONY: install run test lock clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/bench run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Resolves the newest versions that pyproject.toml and requirements-pins.txt allow, for this
# machine's Python and platform, with the hashes of every file of each pinned release.
lock:
	test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q $(PIP_TOOLS)
	rm -f $(LOCK)
	CUSTOM_COMPILE_COMMAND='make lock' $(LOCK_VENV)/bin/pip-compile --generate-hashes --extra test --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links \
		--constraint requirements-pins.txt --output-file $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) $(LOCK_VENV) build *.egg-info
