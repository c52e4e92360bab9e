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
	fonts-kaushanscript fonts-comic-neue fonts-dkg-handwriting fonts-breip fonts-femkeklaver \
	fonts-courier-prime fonts-inconsolata fonts-urw-base35 fonts-freefont-ttf fonts-noto-mono \
	fonts-dejavu-extra fonts-unifont fonts-dotgothic16 fonts-3270 fonts-ocr-b fonts-gnutypewriter \
	fonts-b612 fonts-opendin fonts-routed-gothic fonts-smiley-sans fonts-roboto-unhinted fonts-open-sans \
	fonts-lobster fonts-comfortaa fonts-cantarell xfonts-base \
	lomiri-wallpapers-16.04
# (xfonts-base: X11's bitmap "fixed" faces, which receipts' needle_p prints dot by dot; the last: 15
#  CC-BY/CC-BY-SA/CC0 photographs, the scene recipe's backgrounds in configs/render/real.yaml)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: detect-train detect-export detect-calibrate detect-quantize detect-eval ship-detector
.PHONY: help install fonts browser tesseract ppocr eval-real regress-real data samples train train-bundle prune export average quantize eval lm smooth regress compare mlflow-ui ship ship-lm ship-reading model serve \
	demo test lint bench bench-train bench-runtime bench-serve clean

help:
	@echo "make demo            install, render the demo data, train the demo model, print its figures"
	@echo "make test            run the test suite"
	@echo "make data train EXP=<preset> ARGS='<hydra overrides>'"
	@echo "make samples         contact sheet PNG per scene type (runs/<EXP>/samples/)"
	@echo "make train-bundle EXP=<preset> [RESUME=last.pt]   an offline GPU training folder (runs/<EXP>/bundle/)"
	@echo "make average EXP=<preset> CKPTS='<commit>:<path> ... last.pt'   the mean of a run's checkpoints"
	@echo "make bench           renderer lines/s, training img/s per preset, params and MACs"
	@echo "make eval-real EXP=<preset> [MODELS=name=path,...]   + PP-OCRv4 and Tesseract on ../shared/realdev"
	@echo "make regress-real    the bundled model's real-line CER per category against its committed figures"
	@echo "make lm EXP=<preset> the character LM of decoder lm: EXP's corpus counted, weights chosen on its val lines"
	@echo "make smooth EXP=<preset> input smoothing for EXP's files, chosen on rendered val lines (runs/<EXP>/smooth/)"
	@echo "make detect-train | detect-export | detect-calibrate | detect-quantize | detect-eval | ship-detector [DEXP=det_zh_en]"
	@echo "                     the text-line detector of page mode: synthetic pages -> DB -> ONNX -> real pages"
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

# make train-bundle EXP=zh_en [RESUME=runs/zh_en/train/last.pt] [BUNDLE=dir] [PYTHONS=3.12] [ARGS="render=real"]
#   [DETECTOR=det_zh_en [DRESUME=its last.pt]]: with the page-mode detector too (STAGE=detect ./train.sh there)
# one folder (<= 48 MiB) that trains on a machine with only PyTorch, NumPy, OpenCV and Pillow: ./train.sh MINUTES
RESUME ?=
BUNDLE ?=
PYTHONS ?= 3.12
train-bundle: install fonts
	$(PY) -m crnn.bundle experiment=$(EXP) $(if $(RESUME),+resume=$(RESUME)) $(if $(BUNDLE),+out=$(BUNDLE)) \
		+pythons=$(PYTHONS) $(if $(DETECTOR),+detector=$(DETECTOR)) $(if $(DRESUME),+detector_resume=$(DRESUME)) $(ARGS)

prune: install
	$(PY) -m crnn.prune experiment=$(EXP) $(ARGS)

export: install
	$(PY) -m crnn.export experiment=$(EXP) $(ARGS)

# make average EXP=zh_en_v2 CKPTS="a0823f1:models/snapshots/crnn_zh_en_v2.pt runs/zh_en_v2/train/last.pt"
# the uniform mean of a run's checkpoints (files or <commit>:<path>, oldest first) in runs/<EXP>/average/model.pt;
# then make quantize eval EXP=<EXP> ARGS="export.source=runs/<EXP>/average/model.pt"
CKPTS ?=
average: install
	$(PY) -m crnn.average runs/$(EXP)/average/model.pt $(CKPTS)

# Quantization reads the FP32 ONNX, so it exports first (seconds) from the newest pruned or trained model.
quantize: export
	$(PY) -m crnn.quantize experiment=$(EXP) $(ARGS)

PEERS ?=
TESSERACT_PACKAGES := tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-eng
tesseract:
	@missing=$$(for p in $(TESSERACT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; fi

# PP-OCRv4's recognizer as a peer: rapidocr-onnxruntime ships its ONNX files in the wheel (Apache-2.0).
# Without its dependencies: it names opencv-python, which would shadow our opencv-python-headless (one cv2).
PPOCR_STAMP := $(VENV)/.ppocr
$(PPOCR_STAMP): $(STAMP)
	$(PY) -m pip install -q --no-deps rapidocr-onnxruntime==1.4.4
	$(PY) -m pip install -q pyclipper shapely PyYAML six
	@touch $(PPOCR_STAMP)
ppocr: $(PPOCR_STAMP)

# make eval EXP=demo [PEERS=tesseract,ppocr]
PEER_DEPS = $(if $(findstring tesseract,$(PEERS)$(ARGS)),tesseract) $(if $(findstring ppocr,$(PEERS)$(ARGS)),ppocr)
eval: install $(PEER_DEPS)
	$(PY) -m crnn.eval experiment=$(EXP) $(if $(PEERS),'eval.peers=[$(PEERS)]') $(ARGS)

# The character LM of the CTC beam search (decoder lm): runs/<EXP>/lm/lm.npz counted from EXP's own corpus,
# its weights chosen on EXP's validation lines with its INT8 (else FP32) file (ARGS="lm.model=FILE" for another)
lm: install
	$(PY) -m crnn.lm_build experiment=$(EXP) $(ARGS)

# Input smoothing chosen for EXP's files on rendered validation lines: runs/<EXP>/smooth/<file> (crnn.smooth)
smooth: install
	$(PY) -m crnn.smooth experiment=$(EXP) $(ARGS)

# Real labelled lines (evaluation only, never training): every artifact of EXP (or MODELS=name=path,...)
# plus PP-OCRv4 and Tesseract, on the synthetic test set and $(REALDEV), one thread each -> runs/<EXP>/eval_real/
REALDEV ?= ../shared/realdev
REAL_PEERS ?= ppocr,tesseract
MODELS ?=
comma := ,
QUOTED_MODELS = $(subst $(eval) ,$(comma),$(foreach m,$(subst $(comma), ,$(MODELS)),'$(m)'))
eval-real: install $(if $(REAL_PEERS),tesseract ppocr)
	@if [ ! -d "$(REALDEV)" ]; then echo "[eval-real] $(REALDEV) is absent: no real labelled lines to evaluate on (set REALDEV=<folder of <category>/labels.tsv>)"; exit 0; fi; \
	$(PY) -m crnn.eval experiment=$(EXP) eval.out_dir=eval_real eval.threads=1 \
		'eval.test_sets=[$${data.root}/test,$(REALDEV)]' $(if $(REAL_PEERS),'eval.peers=[$(REAL_PEERS)]') \
		$(if $(MODELS),"eval.artifacts=[$(QUOTED_MODELS)]") $(ARGS)

# The bundled model on $(REALDEV) against the figures committed beside it (models/crnn_zh_en.realdev.json):
# a change to preprocessing or decoding that costs real accuracy fails here. Seconds; skipped without realdev.
REAL_BASELINE ?= models/crnn_zh_en.realdev.json
REAL_TOLERANCE ?= 0.25
regress-real: install
	@if [ ! -d "$(REALDEV)" ]; then echo "[regress-real] $(REALDEV) is absent: gate skipped"; exit 0; fi; \
	$(PY) -m crnn.eval experiment=zh_en name=bundled eval.out_dir=realdev eval.threads=1 eval.latency_lines=5 \
		"eval.artifacts=['bundled=$(BUNDLED_MODEL)$(if $(BUNDLED_LM),+$(BUNDLED_LM))']" 'eval.test_sets=[$(REALDEV)]' mlflow.enabled=false && \
	$(PY) -m crnn.regress experiment=zh_en name=bundled eval.out_dir=realdev eval.baseline=$(REAL_BASELINE) \
		eval.cer_tolerance_points=$(REAL_TOLERANCE)

BASELINE ?= baselines/$(EXP)/report.json
regress: install
	$(PY) -m crnn.regress experiment=$(EXP) eval.baseline=$(BASELINE) $(ARGS)

compare: install
	$(PY) scripts/compare_runs.py --experiment $(EXP)

# make serve [MODEL=path.onnx] [PORT=5000] [WORKERS=2] [LM=file.npz, LM= for greedy] [BATCH_MAX=16 (micro-batching)]: the bundled model once it exists, else the demo
# chain's INT8 model, built on demand.
DEMO_MODEL := runs/demo/quantize/model.int8.onnx
# The bundled INT8 file when a recipe qualified on the machine that quantized it, else the bundled FP32.
BUNDLED_MODEL := $(firstword $(wildcard models/crnn_zh_en.int8.onnx models/crnn_zh_en.onnx))
MODEL ?= $(if $(BUNDLED_MODEL),$(BUNDLED_MODEL),$(DEMO_MODEL))
# the bundled character LM (make ship-lm), read with the bundled model by serve and regress-real
BUNDLED_LM := $(wildcard models/crnn_zh_en.lm.npz)
PORT ?= 5000
HOST ?= 127.0.0.1
# two processes (one ONNX Runtime thread each): the character LM's beam search is Python, which one process
# runs on one core (2 cores, concurrency 16: 258 lines/s with one worker, 408 with two)
WORKERS ?= 2
$(DEMO_MODEL):
	$(MAKE) demo

# The character LM of EXP (runs/<EXP>/lm/lm.npz, tuned with the bundled file) beside the bundled model, gated on
# a make eval-real run that read the bundled file plain and with it (scripts/ship_lm.py says how)
ship-lm: install
	$(PY) scripts/ship_lm.py experiment=$(EXP) $(ARGS)

# A change in how the bundled model is read (eval.second_look, ...), gated like a new model on two eval-real
# runs (ARGS="+before=runs/<a>/eval_real +after=runs/<b>/eval_real"): rewrites models/crnn_zh_en.realdev.json
ship-reading: install
	$(PY) scripts/ship_reading.py experiment=$(EXP) $(ARGS)

# Copy an experiment's INT8 + FP32 models into models/ with a model card written from its reports.
ship: install
	$(PY) scripts/ship_model.py experiment=$(EXP) $(if $(wildcard configs/experiment/$(EXP).notes.md),+notes=configs/experiment/$(EXP).notes.md) $(ARGS)

# The default model, built when missing (the Dockerfile bakes it into the image).
model: install $(MODEL)

BATCH_MAX ?= 0
# page mode's text-line detector file: the bundled one when it exists (PAGE_DETECTOR= turns it off: projection
# splitter). Not DETECTOR, which names the detector experiment a training bundle takes along (train-bundle).
BUNDLED_DETECTOR := $(firstword $(wildcard models/det_zh_en.int8.onnx models/det_zh_en.onnx))
PAGE_DETECTOR ?= $(BUNDLED_DETECTOR)
# the character LM of decoder lm: the bundled one when the bundled model serves (LM= turns it off: greedy)
LM ?= $(if $(filter $(BUNDLED_MODEL),$(MODEL)),$(BUNDLED_LM))
serve: install $(MODEL)
	$(PY) -m crnn.serve --model $(MODEL) --host $(HOST) --port $(PORT) --workers $(WORKERS) --batch-max $(BATCH_MAX) \
		$(if $(PAGE_DETECTOR),--detector $(PAGE_DETECTOR)) $(if $(LM),--lm $(LM))

# The text-line detector (crnn/detect/, issue 14), DEXP=det_zh_en by default:
#   make detect-train [ARGS="detect.train.resume=true detect.train.max_minutes=60"]   synthetic pages -> DB
#   make detect-export                                         runs/<DEXP>/detect/export/detector.onnx
#   make detect-calibrate                      box settings chosen on held-out synthetic pages, into that file
#   make detect-quantize                        INT8, kept only when faster and as accurate as FP32
#   make detect-eval [ARGS="detect.eval.readers=[detector,truth]"]   real pages ($(REALDEV)/pages); truth: labelled boxes
#   make ship-detector                          models/<DEXP>.onnx + card, when it beats the projection splitter and the bundled detector
DEXP ?= det_zh_en
detect-train: install fonts
	$(PY) -m crnn.detect.train experiment=$(DEXP) $(ARGS)
detect-export: install
	$(PY) -m crnn.detect.export experiment=$(DEXP) $(ARGS)
# after each export, before quantize: the box settings chosen on held-out synthetic pages, written into the file
detect-calibrate: install fonts
	$(PY) -m crnn.detect.calibrate experiment=$(DEXP) $(ARGS)
detect-quantize: install
	$(PY) -m crnn.detect.quantize experiment=$(DEXP) $(ARGS)
detect-eval: install ppocr
	$(PY) -m crnn.detect.evaluate experiment=$(DEXP) detect.eval.pages=$(REALDEV)/pages $(ARGS)
ship-detector: install
	$(PY) scripts/ship_detector.py experiment=$(DEXP) $(ARGS)

mlflow-ui: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5001

demo: install fonts
	@start=$$(date +%s); \
	$(PY) -m crnn.data.synth experiment=demo $(ARGS) && \
	$(PY) -m crnn.train experiment=demo $(ARGS) && \
	$(PY) -m crnn.prune experiment=demo $(ARGS) && \
	$(PY) -m crnn.export experiment=demo $(ARGS) && \
	$(PY) -m crnn.quantize experiment=demo $(ARGS) && \
	$(PY) -m crnn.lm_build experiment=demo $(ARGS) && \
	$(PY) -m crnn.eval experiment=demo $(ARGS) && \
	echo "[demo] done in $$(( $$(date +%s) - start )) s"

test: install fonts browser tesseract ppocr
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check crnn scripts tests
	$(VENV)/bin/ruff format --check crnn scripts tests

bench: install fonts
	$(PY) scripts/bench.py $(ARGS)

# CPU training options (bf16, channels_last, torch.compile, threads, loader workers, batch, pooling) on zh_en,
# each in its own process from the v1 weights: runs/bench/train_speed.{json,md}
bench-train: install fonts
	$(PY) scripts/train_speed.py $(ARGS)

# The CPU runtimes (ONNX Runtime default and tuned; OpenVINO too where it is installed: .venv/bin/pip install openvino)
# per line and batch 32, FP32 and INT8, and `crnn predict` on 1,000 files against the engine:
# runs/bench/{runtime,predict_speed}.{json,md}
bench-runtime: install fonts
	$(PY) scripts/runtime_bench.py $(ARGS)
	$(PY) scripts/predict_speed.py

# Loopback load test of the service (bounded: 10,000 single-line requests, 200 pages, then micro-batching
# on a second server), and the article's clean-up measured in page mode on pages of test lines.
PAGE_LMDB ?= $(if $(findstring zh_en,$(MODEL)),data/zh_en/test,data/demo/test)
data/%/test:
	$(MAKE) data EXP=$*

bench-serve: install $(MODEL) $(PAGE_LMDB)
	$(PY) scripts/load_test.py --model $(MODEL) --workers $(WORKERS) $(if $(LM),--lm $(LM))
	$(PY) scripts/page_cleanup.py --model $(MODEL) --lmdb $(PAGE_LMDB)

clean:
	rm -rf runs data mlruns .pytest_cache
