# Two commands for a newcomer:  `make book` (build the book)  and  `make test` (run the tests).
# Each creates/updates .venv and installs the pinned, tested set (requirements.lock).
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROFILE ?= default
DEVICE  ?=
JOBS    ?= 1

# Offline datasets: use ../shared/datasets as the mirror when it exists.
ifneq ($(wildcard ../shared/datasets/SHA256SUMS),)
export OVERSMOOTHING_DATA_MIRROR ?= $(abspath ../shared/datasets)
endif

.PHONY: book test install benchmarks lock clean chromium

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned, so nothing can make pip resolve a CUDA build
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -c requirements.lock -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Without DEVICE each chapter's device comes from the profile, else from its notebook (auto).
book: $(STAMP)
	$(PY) -m oversmoothing build --profile $(PROFILE) $(if $(DEVICE),--device $(DEVICE)) --jobs $(JOBS)

# Headless Chromium (Debian's package) for the browser test of the rendered book.
chromium:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

test: $(STAMP) chromium
	$(PY) -m pytest

benchmarks: $(STAMP)
	$(PY) benchmarks/bench_library.py
	$(PY) benchmarks/bench_batching.py
	$(PY) benchmarks/bench_build.py
	$(PY) benchmarks/bench_scale.py
	$(PY) benchmarks/bench_busy.py

lock:
	$(PY) -m pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' \
	  | { echo "# Tested set of every Python package (pip constraints file). Regenerate with: make lock"; cat; } > requirements.lock

clean:
	rm -rf _build _staging _runs
