# The two commands (README.md): `make run` (the main job) and `make test` (the test suite).
# Both create .venv on first use and install everything they need into it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test
TORCH := torch==2.13.0

.PHONY: run test test-numerics bench notebooks paper results publish-quick explore chromium clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

## main job: every notebook on the quick profile, seed 0 -> runs/quick/, then the report
run: $(STAMP)
	$(BIN)/python -m reasonlib run --profile quick --seeds 0 --workers 1 && $(BIN)/python -m reasonlib report runs/quick

## the whole test suite: unit tests, papermill runs of every notebook, nbval output checks, and the
## failure explorer in headless Chromium
test: $(STAMP) chromium
	$(BIN)/python -m pytest

## the browser test's Chromium (Debian's package): installed when missing and we are root; otherwise
## tests/test_explorer_browser.py skips, saying what to install
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "no chromium and not root: the browser test will be skipped (apt-get install -y chromium)"

## serve the failure explorer of the default job's run (after make run) on localhost; Ctrl-C stops it
explore: $(STAMP)
	$(BIN)/python -m reasonlib explore runs/quick

## the test command under four float settings that imitate other CPUs (about 15 min;
## not part of .ci/run): scalar kernels, AVX2-only, 1 torch thread, and as is
test-numerics: $(STAMP)
	$(BIN)/python scripts/test_numerics.py

## the published study: the paper profile's planned seeds (0-9, runner.PLANNED_SEEDS: what
## every finding's rule is powered for) -> reports/paper/ (about 2 h for 5 seeds on 2 cores:
## docs/results.md, "The paper profile"), its HTML report, then its generated blocks
## (docs/results.md and README.md's headline)
paper: $(STAMP)
	$(BIN)/python -m reasonlib run --profile paper --workers 2 --out reports
	$(BIN)/python -m reasonlib report reports/paper --publish
	$(BIN)/python scripts/results_table.py --profile paper

## rewrite every generated results block (docs/results.md, README.md's headline) from the
## published summaries (reports/quick, reports/paper)
results: $(STAMP)
	$(BIN)/python scripts/results_table.py

## publish the default job's summary (after make run): runs/quick/summary -> reports/quick/summary,
## then its block of docs/results.md from it
publish-quick: $(STAMP)
	rm -rf reports/quick/summary && mkdir -p reports/quick && cp -r runs/quick/summary reports/quick/summary
	$(BIN)/python scripts/results_table.py --profile quick

## benchmark against Hugging Face transformers (benchmark-only extra)
bench: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/bench_vs_transformers.py

## re-sync the jupytext pairs and re-execute the committed notebooks (smoke defaults)
notebooks: $(STAMP)
	$(BIN)/python -m reasonlib refresh

clean:
	rm -rf runs .pytest_cache
