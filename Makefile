# make test          - create .venv when missing, check the style, run the tests
# make run           - every committed run, two jobs of one thread, one per core: the GAN
#                      (200 epochs) beside the VAEs (zdim 20, 2, 5, 10)
# make run-vae-best  - the VAE that targets the published test NLL (zdim 40, 100 epochs)
# make run-experiments - the studies the report cites (they read the runs in OUT_DIR)
# make bench         - the speed benchmarks, images/bench_*.json
# make results       - the generated parts of README.md and docs/results.md
# make classifier    - retrain digit_classifier.pt, the fixed scorer (about a minute)
# Data: DATA_DIR (default ./data) is passed to the scripts as --data_dir. A run that
# finds an earlier run's files refuses to start: RUN_FLAGS=--resume or --overwrite.
PYTHON ?= python3
DATA_DIR ?= ./data
OUT_DIR ?= images
RUN_FLAGS ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
VAE := $(PY) a3_vae_template.py --data_dir $(DATA_DIR) --out_dir $(OUT_DIR) $(RUN_FLAGS)
EXP := $(PY) -m experiments

.PHONY: test run run-vae run-vae-best run-gan run-experiments bench results classifier clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	DATA_DIR=$(DATA_DIR) $(PY) -m pytest -q

run: $(STAMP)
	$(MAKE) --no-print-directory -j2 run-gan run-vae

run-vae: $(STAMP)
	$(VAE) --zdim 20
	$(VAE) --zdim 2
	$(VAE) --zdim 5
	$(VAE) --zdim 10

# Below the published 88.56 nats (see README).
run-vae-best: $(STAMP)
	$(PY) a3_vae_template.py --data_dir $(DATA_DIR) --out_dir $(OUT_DIR)/vae_best $(RUN_FLAGS) \
		--zdim 40 --epochs 100 --iw_samples 5000

run-gan: $(STAMP)
	$(PY) a3_gan_template.py --data_dir $(DATA_DIR) --out_dir $(OUT_DIR) $(RUN_FLAGS)

# After `make run`: they read the models in $(OUT_DIR).
run-experiments: $(STAMP)
	$(EXP).sample_scores --data_dir $(DATA_DIR) --out_dir $(OUT_DIR) --out $(OUT_DIR)/sample_scores.json
	$(EXP).vae_mc_vs_is --data_dir $(DATA_DIR) --out_dir $(OUT_DIR) --out $(OUT_DIR)/vae_mc_vs_is.json
	$(EXP).vae_interpolation --data_dir $(DATA_DIR) --out_dir $(OUT_DIR) --out $(OUT_DIR)/vae_interpolation.json
	$(EXP).vae_activations --data_dir $(DATA_DIR) --out $(OUT_DIR)/vae_activations.json
	$(EXP).gan_saturation --data_dir $(DATA_DIR) --out $(OUT_DIR)/gan_saturation.json
	$(EXP).gan_remedy --data_dir $(DATA_DIR) --out $(OUT_DIR)/gan_remedy_mnist.json

bench: $(STAMP)
	$(PY) -m bench.bench_gan --data_dir $(DATA_DIR) --out $(OUT_DIR)/bench_gan.json
	$(PY) -m bench.bench_step --data_dir $(DATA_DIR) --out $(OUT_DIR)/bench_step.json

results: $(STAMP)
	$(PY) -m report.results --out_dir $(OUT_DIR)

classifier: $(STAMP)
	$(PY) sample_quality.py --data_dir $(DATA_DIR)

clean:
	rm -rf $(VENV) .pytest_cache __pycache__ */__pycache__

# make report   - report/report.pdf (numbers from images/*.json through report/make_results.py;
#                 installs TeX Live when pdflatex is missing). STRICT=1 also fails on missing
#                 figures or numbers, a figure away from its question, an answer too long.
# make submission LASTNAME="van der Berg" NAME="Anna van der Berg" [STUDENT_ID=...]
#               - lastname_assignment3.zip: report.pdf and report/ with everything report.tex
#                 needs beside code/, which holds the code with its paths kept.
STRICT ?= 0
NAME ?=
LASTNAME ?=
STUDENT_ID ?=
export NAME LASTNAME STUDENT_ID

.PHONY: report submission

report:
	PYTHON=$(PYTHON) STRICT=$(STRICT) report/build.sh

submission:
	$(MAKE) --no-print-directory report STRICT=1
	$(PYTHON) -m report.submission
