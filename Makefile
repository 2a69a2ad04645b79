# make test  - create .venv when missing and run the whole test suite
# make run   - the full default experiments, writing figures and metrics to images/
# make bench - the speed benchmarks
# make results - rewrite README.md's results section from images/*.json
# Data: DATA_DIR (default ./data) is passed to the scripts as --data_dir.
PYTHON ?= python3
DATA_DIR ?= ./data
OUT_DIR ?= images
# Offline only the binarized set can train the GAN; use mnist with a network.
GAN_DATASET ?= bmnist
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test run run-vae run-gan bench results clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

test: $(STAMP)
	DATA_DIR=$(DATA_DIR) $(PY) -m pytest -q tests

run: run-vae run-gan

run-vae: $(STAMP)
	$(PY) a3_vae_template.py --data_dir $(DATA_DIR) --out_dir $(OUT_DIR) --zdim 20
	$(PY) a3_vae_template.py --data_dir $(DATA_DIR) --out_dir $(OUT_DIR) --zdim 2

run-gan: $(STAMP)
	$(PY) a3_gan_template.py --data_dir $(DATA_DIR) --out_dir $(OUT_DIR) --dataset $(GAN_DATASET)

bench: $(STAMP)
	$(PY) bench/bench_vae.py --data_dir $(DATA_DIR) --out $(OUT_DIR)/bench_vae.json
	$(PY) bench/bench_gan.py --data_dir $(DATA_DIR) --out $(OUT_DIR)/bench_gan.json

results: $(STAMP)
	$(PY) results.py --out_dir $(OUT_DIR)

clean:
	rm -rf $(VENV) .pytest_cache __pycache__ */__pycache__
