# clipforensics: `make demo` runs the pipeline on the generated data set, `make test` runs the tests.
# Both build .venv first when it is missing. `make help` lists targets and variables.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

DATA       ?= data/synthetic
MODEL      ?= tiny-vit
PRETRAINED ?= none
RUN        ?= demo
CACHE      := cache/$(RUN).h5
EXTRACT_ARGS ?=

.PHONY: help setup data extract demo test clean

help:  ## list targets and variables
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'
	@echo "variables: DATA=$(DATA) MODEL=$(MODEL) PRETRAINED=$(PRETRAINED) RUN=$(RUN)"

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

setup: $(STAMP)  ## build .venv and install requirements.txt

$(DATA)/README.txt: | $(STAMP)
	$(PY) -m clipforensics.synthetic --out $(DATA) --overwrite

data: $(DATA)/README.txt  ## generate the synthetic FaceForensics-shaped data set

$(CACHE): $(DATA)/README.txt | $(STAMP)
	$(PY) extract_features.py --data-root $(DATA) --model $(MODEL) --pretrained $(PRETRAINED) --out $@ $(EXTRACT_ARGS)

extract: $(CACHE)  ## CLIP embeddings of DATA into cache/RUN.h5

demo: $(CACHE)  ## generate data, extract, summarise the cache
	$(PY) -c "from clipforensics.cache import read_cache; from clipforensics.extraction import summarize; print(summarize(read_cache('$(CACHE)')))"

test: $(STAMP)  ## run the whole test suite
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

clean:  ## remove generated data, caches, runs and reports (keeps .venv)
	rm -rf data runs reports cache/*.h5 cache/*.json cache/*.parts
