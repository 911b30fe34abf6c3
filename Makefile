# RNN Playground: `make run` installs and starts the app, `make test` installs and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench checkpoints browser screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt requirements-ray.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $@

# build-kernels compiles the optional fused GRU/LSTM kernels once (about 30 s; a no-op later, and
# harmless without a C++ compiler: training then uses torch's layers).
run: $(VENV)/.installed
	-$(BIN)/python -m rnn_demo build-kernels
	$(BIN)/streamlit run app.py

# The browser test drives Debian's chromium; install it when we are allowed to (root, e.g. CI).
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install chromium: the browser test will fail under CI or skip locally"; \
	fi

test: $(VENV)/.installed-dev browser
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/run_all.py

checkpoints: $(VENV)/.installed
	$(BIN)/python -m rnn_demo build-checkpoints

# The README's pictures, from the running app with the shipped runs (docs/screenshots/, a few minutes).
screenshots: $(VENV)/.installed-dev browser
	$(BIN)/python docs/make_screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache
