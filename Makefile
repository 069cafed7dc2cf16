# Both targets build their own environment from scratch on a fresh machine.
# torch is pinned to the CPU wheel first: an unpinned torch would pull the CUDA build.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow clean venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

# The demo runs sequentially (--executor local), as the README's table of its results was produced.
demo: $(STAMP)
	$(BIN)/losslab run examples/noisy-labels.yaml --store sqlite:///results/noisy-labels.db --workers 2 --executor local
	$(BIN)/losslab report examples/noisy-labels.yaml --store sqlite:///results/noisy-labels.db --html results/noisy-labels.html

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n 2 src tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests

clean:
	rm -rf $(VENV) results .pytest_cache
