# clipforensics: `make demo` runs the pipeline on the generated data set, `make test` runs the tests.
# Both build .venv first when it is missing. `make help` lists targets and variables.
# Stage targets are real files, so `make` reruns only what changed (`make -n demo` shows what would run).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

DATA       ?= data/synthetic
DATA_ARGS  ?= --videos 60 --frames 6 --size 128
MODEL      ?= tiny-vit
PRETRAINED ?= none
RUN        ?= demo
TRAIN      ?= FaceSwap
TEST       ?= NeuralTextures,Deepfakes,Face2Face
HEADS      ?= all
MATRIX_HEAD ?= logreg
EXTRACT_ARGS ?=

CACHE   := cache/$(RUN).h5
RUNDIR  := runs/$(RUN)
REPORT  := reports/$(RUN)
PROTOCOL := --train-fakes $(TRAIN) --test-fakes $(TEST)

VIDEOS      ?=
FRAMES_OUT  ?= data/frames
FRAMES_ARGS ?= --frames 32 --size 224

.PHONY: help setup data frames extract heads eval matrix demo test clean

help:  ## list targets and variables
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'
	@echo "variables: DATA=$(DATA) MODEL=$(MODEL) PRETRAINED=$(PRETRAINED) RUN=$(RUN) TRAIN=$(TRAIN) TEST=$(TEST) HEADS=$(HEADS)"

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

setup: $(STAMP)  ## build .venv and install requirements.txt

$(DATA)/README.txt: | $(STAMP)
	$(PY) -m clipforensics.synthetic --out $(DATA) --overwrite $(DATA_ARGS)

data: $(DATA)/README.txt  ## generate the synthetic FaceForensics-shaped data set

frames: | $(STAMP)  ## face-cropped frames from VIDEOS (FF++ tree or class folders) into FRAMES_OUT (resumable)
	@test -n "$(VIDEOS)" || { echo "set VIDEOS=/path/to/FaceForensics++ (or a folder of class folders)"; exit 2; }
	$(PY) prepare_frames.py --videos-root $(VIDEOS) --out $(FRAMES_OUT) $(FRAMES_ARGS)

$(CACHE): $(DATA)/README.txt | $(STAMP)
	$(PY) extract_features.py --data-root $(DATA) --model $(MODEL) --pretrained $(PRETRAINED) --out $@ $(EXTRACT_ARGS)

extract: $(CACHE)  ## CLIP embeddings of DATA into cache/RUN.h5

$(RUNDIR)/run.json: $(CACHE)
	$(PY) fit_heads.py --cache $(CACHE) --heads $(HEADS) --out $(RUNDIR) $(PROTOCOL) --overwrite

heads: $(RUNDIR)/run.json  ## fit HEADS on the cache (train TRAIN, test TEST)

$(REPORT)/metrics.json: $(RUNDIR)/run.json
	$(PY) evaluate.py $(RUNDIR)/*/scores.csv --out $(REPORT)

eval: $(REPORT)/metrics.json  ## evaluate every head of the run: metrics, plots, report.html

$(REPORT)/matrix/matrix.csv: $(CACHE)
	$(PY) evaluate.py matrix --cache $(CACHE) --head $(MATRIX_HEAD) --out $(REPORT)/matrix

matrix: $(REPORT)/matrix/matrix.csv  ## cross-manipulation AUC matrix of MATRIX_HEAD

demo: $(REPORT)/metrics.json $(REPORT)/matrix/matrix.csv  ## generate -> extract -> heads -> evaluate -> matrix
	@cat $(REPORT)/metrics.md
	@echo "report: $(REPORT)/report.html  matrix: $(REPORT)/matrix/matrix_frame_auc.png"

test: $(STAMP)  ## run the whole test suite
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

clean:  ## remove generated data, caches, runs and reports (keeps .venv)
	rm -rf data runs reports cache/*.h5 cache/*.json cache/*.parts
