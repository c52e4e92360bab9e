# crnn-toolkit. `make demo` installs what is missing and runs the pipeline on the demo preset;
# `make test` runs the test suite. Pass Hydra overrides with ARGS="train.max_steps=2000".
SHELL := /bin/bash
EXP ?= demo
ARGS ?=
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FONT_PACKAGES := fonts-noto-cjk fonts-wqy-zenhei fonts-wqy-microhei fonts-arphic-ukai fonts-arphic-uming \
	fonts-arphic-gkai00mp fonts-arphic-gbsn00lp fonts-cwtex-fs fonts-cwtex-kai fonts-cwtex-ming \
	fonts-cwtex-heib fonts-lxgw-wenkai fonts-dejavu-core fonts-liberation fonts-dancingscript \
	fonts-kaushanscript fonts-comic-neue fonts-dkg-handwriting fonts-breip fonts-femkeklaver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help install fonts browser tesseract data samples train prune export quantize eval regress compare mlflow-ui ship model serve \
	demo test lint bench bench-serve clean

help:
	@echo "make demo            install, render the demo data, train the demo model, print its figures"
	@echo "make test            run the test suite"
	@echo "make data train EXP=<preset> ARGS='<hydra overrides>'"
	@echo "make samples         contact sheet PNG per scene type (runs/<EXP>/samples/)"
	@echo "make bench           renderer lines/s, training img/s per preset, params and MACs"
	@echo "make mlflow-ui       MLflow UI on 127.0.0.1:5001"

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU build lies on local disk; a looser spec pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Debian font packages, installed with apt-get only when one is missing.
fonts:
	@missing=$$(for p in $(FONT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing fonts: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Debian's Chromium for the browser tests (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

data: install fonts
	$(PY) -m crnn.data.synth experiment=$(EXP) $(ARGS)

samples: install fonts
	$(PY) scripts/contact_sheet.py experiment=$(EXP) $(ARGS)

train: install
	$(PY) -m crnn.train experiment=$(EXP) $(ARGS)

prune: install
	$(PY) -m crnn.prune experiment=$(EXP) $(ARGS)

export: install
	$(PY) -m crnn.export experiment=$(EXP) $(ARGS)

# Quantization reads the FP32 ONNX, so it exports first (seconds) from the newest pruned or trained model.
quantize: export
	$(PY) -m crnn.quantize experiment=$(EXP) $(ARGS)

PEERS ?=
TESSERACT_PACKAGES := tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-eng
tesseract:
	@missing=$$(for p in $(TESSERACT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; fi

# make eval EXP=demo [PEERS=tesseract]
eval: install $(if $(findstring tesseract,$(PEERS)$(ARGS)),tesseract)
	$(PY) -m crnn.eval experiment=$(EXP) $(if $(PEERS),'eval.peers=[$(PEERS)]') $(ARGS)

BASELINE ?= baselines/$(EXP)/report.json
regress: install
	$(PY) -m crnn.regress experiment=$(EXP) eval.baseline=$(BASELINE) $(ARGS)

compare: install
	$(PY) scripts/compare_runs.py --experiment $(EXP)

# make serve [MODEL=path.onnx] [PORT=5000] [WORKERS=1] [BATCH_MAX=16 (micro-batching)]: the bundled model once it exists, else the demo
# chain's INT8 model, built on demand.
DEMO_MODEL := runs/demo/quantize/model.int8.onnx
# The bundled INT8 file when a recipe qualified on the machine that quantized it, else the bundled FP32.
BUNDLED_MODEL := $(firstword $(wildcard models/crnn_zh_en.int8.onnx models/crnn_zh_en.onnx))
MODEL ?= $(if $(BUNDLED_MODEL),$(BUNDLED_MODEL),$(DEMO_MODEL))
PORT ?= 5000
HOST ?= 127.0.0.1
WORKERS ?= 1
$(DEMO_MODEL):
	$(MAKE) demo

# Copy an experiment's INT8 + FP32 models into models/ with a model card written from its reports.
ship: install
	$(PY) scripts/ship_model.py experiment=$(EXP) $(if $(wildcard configs/experiment/$(EXP).notes.md),+notes=configs/experiment/$(EXP).notes.md) $(ARGS)

# The default model, built when missing (the Dockerfile bakes it into the image).
model: install $(MODEL)

BATCH_MAX ?= 0
serve: install $(MODEL)
	$(PY) -m crnn.serve --model $(MODEL) --host $(HOST) --port $(PORT) --workers $(WORKERS) --batch-max $(BATCH_MAX)

mlflow-ui: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5001

demo: install fonts
	@start=$$(date +%s); \
	$(PY) -m crnn.data.synth experiment=demo $(ARGS) && \
	$(PY) -m crnn.train experiment=demo $(ARGS) && \
	$(PY) -m crnn.prune experiment=demo $(ARGS) && \
	$(PY) -m crnn.export experiment=demo $(ARGS) && \
	$(PY) -m crnn.quantize experiment=demo $(ARGS) && \
	$(PY) -m crnn.eval experiment=demo $(ARGS) && \
	echo "[demo] done in $$(( $$(date +%s) - start )) s"

test: install fonts browser tesseract
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check crnn scripts tests
	$(VENV)/bin/ruff format --check crnn scripts tests

bench: install fonts
	$(PY) scripts/bench.py $(ARGS)

# Loopback load test of the service (bounded: 10,000 single-line requests, 200 pages, then micro-batching
# on a second server), and the article's clean-up measured in page mode on pages of test lines.
PAGE_LMDB ?= $(if $(findstring zh_en,$(MODEL)),data/zh_en/test,data/demo/test)
data/%/test:
	$(MAKE) data EXP=$*

bench-serve: install $(MODEL) $(PAGE_LMDB)
	$(PY) scripts/load_test.py --model $(MODEL) --workers $(WORKERS)
	$(PY) scripts/page_cleanup.py --model $(MODEL) --lmdb $(PAGE_LMDB)

clean:
	rm -rf runs data mlruns .pytest_cache
