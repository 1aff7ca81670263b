# Two entry points: `make demo` and `make test`. Both install what is missing first, so they
# work on a fresh machine and are cheap to repeat.
PYTHON ?= python3
STAMP := .make/installed

.PHONY: setup demo test bench reports clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@bash scripts/setup.sh "$(PYTHON)"
	@mkdir -p .make && touch $(STAMP)

demo: setup
	$(PYTHON) -m core_ssl.demo

test: setup
	$(PYTHON) -m pytest -q

reports: setup
	bash scripts/reports.sh

bench: setup
	$(PYTHON) benchmarks/augment.py

clean:
	rm -rf .make runs build *.egg-info
