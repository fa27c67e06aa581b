# clipforensics: `make demo` runs the pipeline on the generated data set, `make test` runs the tests.
# Both build .venv first when it is missing. `make help` lists targets and variables.
#
# Stage targets are real files. Each stage's variables are also written to a small stamp under
# .make/ (only when they change), so changing HEADS refits the heads and re-evaluates without
# re-extracting, changing MODEL re-extracts, and touching nothing reruns nothing (`make -q report matrix` exits 0).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

SYNTHETIC  := data/synthetic
DATA       ?= $(SYNTHETIC)
DATA_ARGS  ?= --videos 80 --frames-per-video 4 --size 64 --strength 3
MODEL      ?= tiny-vit
PRETRAINED ?= none
RUN        ?= demo
TRAIN      ?= FaceSwap
TEST       ?= FaceSwap,NeuralTextures,Deepfakes,Face2Face
SPLIT      ?= 50/20/30
HEADS      ?= all
MATRIX_HEAD ?= logreg
READ       ?= $(MATRIX_HEAD),$(RUN)-lora
EXTRACT_ARGS ?=
LORA_ARGS  ?= --epochs 4 --max-train-images 480 --batch-size 32 --rank 8 --alpha 16 --lr 3e-3 --workers 0
LAYER_HEADS ?= logreg,svm
PERTURB     ?= jpeg:90,50,20 blur:1,2,4 noise:0.05,0.1
ROBUST_HEADS ?= logreg,svm
FPV         ?= 1,2,all
# `make methods`: each method of METHODS on the cache, lora being the demo's LoRA run (LORA_ARGS); the others take
# METHOD_ARGS (LORA_ARGS without the LoRA options) and their own options only, METHOD_ARGS_<method>.
METHODS     ?= lora dora layernorm svd
METHOD_ARGS ?= --epochs 4 --max-train-images 480 --batch-size 32 --lr 3e-3 --workers 0
METHOD_ARGS_dora      ?= --rank 8 --alpha 16 --targets mlp
METHOD_ARGS_layernorm ?= --uniformity-weight 0.5 --alignment-weight 0.1
METHOD_ARGS_svd       ?= --rank 8
VIDEOS      ?=
FRAMES_OUT  ?= data/frames
FRAMES_ARGS ?= --frames-per-video 32

# The tiny model's 64-wide matrices are too small for a second OpenMP thread to pay: on this 2-core machine,
# shared, one demo LoRA epoch took 4.4 s with one thread and 28 s with two. Other models keep torch's default.
THREADS  ?= $(if $(filter tiny-vit,$(MODEL)),1,)
RUN_PY   := $(if $(THREADS),OMP_NUM_THREADS=$(THREADS) ,)$(PY)

CACHE    := cache/$(RUN).h5
RUNDIR   := runs/$(RUN)
LORADIR  := runs/$(RUN)-lora
REPORT   := reports/$(RUN)
PROTOCOL := --train-fakes $(TRAIN) --test-fakes $(TEST) --real-split $(SPLIT)

# stamp(file, text): rewrite .make/<file> only when `text` differs from what it holds.
stamp = $(shell mkdir -p .make && { [ "$$(cat .make/$(1) 2>/dev/null)" = '$(2)' ] || printf '%s' '$(2)' > .make/$(1); })
$(call stamp,$(RUN).data,$(DATA) $(DATA_ARGS))
$(call stamp,$(RUN).extract,$(MODEL) $(PRETRAINED) $(EXTRACT_ARGS))
$(call stamp,$(RUN).heads,$(HEADS) $(PROTOCOL))
$(call stamp,$(RUN).lora,$(LORA_ARGS) $(PROTOCOL))
$(call stamp,$(RUN).matrix,$(MATRIX_HEAD) $(SPLIT))
$(call stamp,$(RUN).layers,$(MODEL) $(PRETRAINED) $(EXTRACT_ARGS) $(LAYER_HEADS) $(PROTOCOL))
$(call stamp,$(RUN).perturb,$(MODEL) $(PRETRAINED) $(EXTRACT_ARGS) $(PERTURB))
$(call stamp,$(RUN).robust,$(ROBUST_HEADS) $(PROTOCOL))
$(foreach m,$(filter-out lora,$(METHODS)),$(call stamp,$(RUN).method-$(m),$(METHOD_ARGS) $(METHOD_ARGS_$(m)) $(PROTOCOL)))

# The generated set is (re)made by `make data`; a user's own DATA folder is only ever read.
ifeq ($(DATA),$(SYNTHETIC))
DATA_DEP := $(DATA)/README.txt
else
DATA_DEP := $(DATA)
endif

.PHONY: help setup data frames extract heads lora eval matrix report demo layers robustness methods full-report test bench clean

help:  ## list targets and variables
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'
	@echo "variables: DATA=$(DATA) MODEL=$(MODEL) PRETRAINED=$(PRETRAINED) RUN=$(RUN) TRAIN=$(TRAIN)"
	@echo "           TEST=$(TEST) SPLIT=$(SPLIT) HEADS=$(HEADS) MATRIX_HEAD=$(MATRIX_HEAD) READ=$(READ)"
	@echo "           THREADS=$(THREADS) LORA_ARGS='$(LORA_ARGS)'"
	@echo "           EXTRACT_ARGS='$(EXTRACT_ARGS)' VIDEOS=$(VIDEOS) FRAMES_OUT=$(FRAMES_OUT)"
	@echo "           LAYER_HEADS=$(LAYER_HEADS) PERTURB='$(PERTURB)' ROBUST_HEADS=$(ROBUST_HEADS) FPV=$(FPV)"
	@echo "           METHODS='$(METHODS)' METHOD_ARGS='$(METHOD_ARGS)' METHOD_ARGS_<method>: $(foreach m,$(filter-out lora,$(METHODS)),$(m)='$(METHOD_ARGS_$(m))')"

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

setup: $(STAMP)  ## build .venv and install requirements.txt

$(SYNTHETIC)/README.txt: .make/$(RUN).data | $(STAMP)
	$(PY) -m clipforensics.synthetic --out $(SYNTHETIC) --overwrite $(DATA_ARGS)

data: $(SYNTHETIC)/README.txt  ## generate the synthetic FaceForensics-shaped data set

frames: | $(STAMP)  ## face-cropped frames from VIDEOS (FF++ tree or class folders) into FRAMES_OUT (resumable)
	@test -n "$(VIDEOS)" || { echo "set VIDEOS=/path/to/FaceForensics++ (or a folder of class folders)"; exit 2; }
	$(PY) prepare_frames.py --videos-root $(VIDEOS) --out $(FRAMES_OUT) $(FRAMES_ARGS)

$(CACHE): $(DATA_DEP) .make/$(RUN).extract | $(STAMP)
	$(RUN_PY) extract_features.py --data-root $(DATA) --model $(MODEL) --pretrained $(PRETRAINED) --out $@ --overwrite $(EXTRACT_ARGS)

extract: $(CACHE)  ## CLIP embeddings of DATA into cache/RUN.h5

$(RUNDIR)/run.json: $(CACHE) .make/$(RUN).heads
	$(RUN_PY) fit_heads.py --cache $(CACHE) --heads $(HEADS) --out $(RUNDIR) $(PROTOCOL) --overwrite

heads: $(RUNDIR)/run.json  ## fit HEADS on the cache (train on TRAIN, test on TEST)

$(LORADIR)/scores.csv: $(CACHE) .make/$(RUN).lora
	$(RUN_PY) finetune_lora.py --base-cache $(CACHE) --out $(LORADIR) $(PROTOCOL) --overwrite $(LORA_ARGS)

lora: $(LORADIR)/scores.csv  ## LoRA fine-tuning on the cache's frames, then re-extraction

$(REPORT)/metrics.json: $(RUNDIR)/run.json
	$(RUN_PY) evaluate.py $(RUNDIR)/*/scores.csv --out $(REPORT) --overwrite

eval: $(REPORT)/metrics.json  ## evaluate every head of the run: metrics, plots, report.html

$(REPORT)/matrix/matrix.csv: $(CACHE) .make/$(RUN).matrix
	$(RUN_PY) evaluate.py matrix --cache $(CACHE) --heads $(MATRIX_HEAD) --out $(REPORT)/matrix --real-split $(SPLIT)

matrix: $(REPORT)/matrix/matrix.csv  ## cross-manipulation AUC matrix of MATRIX_HEAD

$(REPORT)-all/metrics.json: $(RUNDIR)/run.json $(LORADIR)/scores.csv $(REPORT)/matrix/matrix.csv
	$(RUN_PY) evaluate.py $(RUNDIR)/*/scores.csv $(LORADIR)/scores.csv --frame-budgets $(FPV) --include $(REPORT)/matrix --out $(REPORT)-all --overwrite

report: $(REPORT)-all/metrics.json  ## one report comparing the frozen heads with the LoRA run, the matrix folded in

# The stages print their tables once (evaluate.py's only with --print: they are in the report); the demo ends with
# the reading and where the report is.
demo: $(REPORT)/matrix/matrix.csv $(REPORT)-all/metrics.json  ## data -> extract -> heads -> LoRA -> evaluate -> matrix
	@echo
	@$(PY) -m clipforensics.report.reading $(REPORT)-all/metrics.json --runs $(READ)
	@echo "report: $(REPORT)-all/report.html (matrix heatmap: $(REPORT)/matrix/matrix_frame_auc.png)"

# Every block's class token in its own cache (the plain cache stays small), then a head per layer.
cache/$(RUN)-layers.h5: $(DATA_DEP) .make/$(RUN).layers | $(STAMP)
	$(RUN_PY) extract_features.py --data-root $(DATA) --model $(MODEL) --pretrained $(PRETRAINED) --out $@ --overwrite --layers all $(EXTRACT_ARGS)

runs/$(RUN)-layers/layer_sweep.csv: cache/$(RUN)-layers.h5 .make/$(RUN).layers
	$(RUN_PY) fit_heads.py --cache $< --heads $(LAYER_HEADS) --out runs/$(RUN)-layers --layer-sweep $(PROTOCOL) --overwrite

layers: runs/$(RUN)-layers/layer_sweep.csv  ## extract every layer (--layers all), fit LAYER_HEADS per layer (--layer-sweep)

# Perturbed copies of every frame in their own cache, heads fitted on its clean rows, scored on each copy.
cache/$(RUN)-perturbed.h5: $(DATA_DEP) .make/$(RUN).perturb | $(STAMP)
	$(RUN_PY) extract_features.py --data-root $(DATA) --model $(MODEL) --pretrained $(PRETRAINED) --out $@ --overwrite --perturb $(PERTURB) $(EXTRACT_ARGS)

runs/$(RUN)-perturbed/run.json: cache/$(RUN)-perturbed.h5 .make/$(RUN).robust
	$(RUN_PY) fit_heads.py --cache $< --heads $(ROBUST_HEADS) --out runs/$(RUN)-perturbed $(PROTOCOL) --overwrite

# The LoRA run on the same cache: its re-extracted cache keeps the copies, so its head is scored on them too.
runs/$(RUN)-perturbed-lora/scores.csv: cache/$(RUN)-perturbed.h5 .make/$(RUN).lora
	$(RUN_PY) finetune_lora.py --base-cache $< --out runs/$(RUN)-perturbed-lora $(PROTOCOL) --overwrite $(LORA_ARGS)

$(REPORT)-robustness/robustness.csv: runs/$(RUN)-perturbed/run.json runs/$(RUN)-perturbed-lora/scores.csv
	$(RUN_PY) evaluate.py robustness runs/$(RUN)-perturbed runs/$(RUN)-perturbed-lora --out $(REPORT)-robustness --overwrite

robustness: $(REPORT)-robustness/robustness.csv  ## extract with PERTURB copies, fit ROBUST_HEADS and LoRA, AUC vs severity

# Each fine-tuning method in its own run folder runs/RUN-<method> (lora: the LoRA run above), on the same cache and
# protocol, then one comparison: parameters, in-domain and unseen video AUC, paired differences against LoRA.
runs/$(RUN)-%/scores.csv: $(CACHE) .make/$(RUN).method-%
	$(RUN_PY) finetune_lora.py --base-cache $(CACHE) --out runs/$(RUN)-$* --method $* $(PROTOCOL) --overwrite $(METHOD_ARGS) $(METHOD_ARGS_$*)

$(REPORT)-methods/methods.json: $(foreach m,$(METHODS),runs/$(RUN)-$(m)/scores.csv)
	$(RUN_PY) evaluate.py methods $(foreach m,$(METHODS),runs/$(RUN)-$(m)) --out $(REPORT)-methods --overwrite

methods: $(REPORT)-methods/methods.json  ## each of METHODS trained on the cache (runs/RUN-<method>), compared in one report

# The demo's report with the layer sweep and the robustness evaluation folded in (as they wrote them).
$(REPORT)-full/metrics.json: $(RUNDIR)/run.json $(LORADIR)/scores.csv $(REPORT)/matrix/matrix.csv runs/$(RUN)-layers/layer_sweep.csv $(REPORT)-robustness/robustness.csv
	$(RUN_PY) evaluate.py $(RUNDIR)/*/scores.csv $(LORADIR)/scores.csv --frame-budgets $(FPV) --include $(REPORT)/matrix runs/$(RUN)-layers $(REPORT)-robustness --out $(REPORT)-full --overwrite

full-report: $(REPORT)-full/metrics.json  ## one report.html: heads, LoRA, paired tests, frames per video, layer sweep, robustness

test: $(STAMP)  ## run the whole test suite
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

bench: $(STAMP)  ## speed and memory benchmarks (prints tables for the README)
	$(PY) bench/extract_speed.py
	$(PY) bench/heads_speed.py
	$(PY) bench/lora_speed.py
	$(PY) bench/memory.py
	$(PY) bench/scaling.py
	$(PY) bench/faces.py
	$(PY) bench/analyses.py
	$(PY) bench/crossdata_speed.py

clean:  ## remove generated data, caches, runs, reports and stamps (keeps .venv)
	rm -rf $(SYNTHETIC) runs reports .make cache/*.h5 cache/*.json cache/*.parts cache/*.lock
