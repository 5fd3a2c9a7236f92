# mmmos — two commands set up everything on a fresh machine:
#   make demo    the whole job end to end on built-in synthetic data and the built-in logmel encoder
#   make test    the test suite
# The virtualenv lives in .venv and is reused once installed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mmmos-installed

# make extract variables (see README "Extracting the Track 2 data")
MANIFEST  ?= demo_out/corpus/train.csv
DATA_ROOT ?=
ENCODERS  ?= logmel
WEIGHTS   ?=
STORE     ?= demo_out/cache.zarr
BACKEND   ?=
DEVICE    ?= auto
# make sweep variables
RUN       ?= demo_out/run
TRAIN     ?= demo_out/corpus/train.csv
DEV       ?= demo_out/corpus/dev.csv
EVAL      ?= pam_dev=demo_out/corpus/pam_dev.csv
JOBS      ?= 1
SWEEP_ARGS ?=
# make bench variables, e.g. BENCH_ARGS="--only sweep --scale 1"
BENCH_ARGS ?=

.PHONY: install demo test extract sweep bench faults clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: the pair known to install here (muq needs torchaudio)
	$(BIN)/python -m pip install -q torch==2.9.1 torchaudio==2.9.1
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	@touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -q

# both tasks: Track 2, then Track 1 (small dual-branch head on logmel_slow + hashtext; about 3 minutes)
demo: $(STAMP)
	$(BIN)/python -m mmmos demo --out demo_out
	$(BIN)/python -m mmmos demo --task track1 --out demo_out/track1

extract: $(STAMP)
	$(BIN)/mmmos extract $(foreach m,$(MANIFEST),--manifest $(m)) --encoders $(ENCODERS) --store $(STORE) $(if $(BACKEND),--backend $(BACKEND)) \
		--device $(DEVICE) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(DATA_ROOT),--data-root $(DATA_ROOT))

sweep: $(STAMP)
	$(BIN)/mmmos sweep --store $(STORE) --run $(RUN) --train $(TRAIN) --dev $(DEV) \
		$(foreach e,$(EVAL),--eval $(e)) --jobs $(JOBS) $(SWEEP_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run --out bench_out $(BENCH_ARGS)

# the fault-injection figure alone (make bench runs it too): faults injected, detected, repaired, lost, silently wrong
faults: $(STAMP)
	$(BIN)/python -m bench.faults --out bench_out

clean:
	rm -rf demo_out bench_out
