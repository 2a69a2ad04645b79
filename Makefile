# make test    - create .venv when missing and run the whole test suite
# make run     - every committed run: the VAEs (zdim 20, 2, 5, 10), then question
#                1.4's experiment, beside the GAN on grey-scale MNIST (200 epochs):
#                two jobs of one thread each, one per core
# make run-vae-best - the VAE that targets the published test NLL (about 45 min)
# make run-experiments - the studies the report cites: the GAN recipe comparison on
#                grey-scale and on binarized MNIST, the GAN's first epoch (question 2.4)
#                and the VAE architectures (question 1.12)
# make bench   - the speed benchmarks, written to images/bench_*.json
# make results - rewrite the generated parts of README.md, docs/results.md, docs/flags.md
# Data: DATA_DIR (default ./data) is passed to the scripts as --data_dir.
# Runs that find finished epochs in OUT_DIR refuse to start over: pass
# RUN_FLAGS=--resume to continue them or RUN_FLAGS=--overwrite to redo them.
PYTHON ?= python3
DATA_DIR ?= ./data
OUT_DIR ?= images
GAN_DATASET ?= mnist
RUN_FLAGS ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VAE := $(PY) a3_vae_template.py --data_dir $(DATA_DIR) --out_dir $(OUT_DIR) $(RUN_FLAGS)

.PHONY: test run run-vae run-vae-mc run-vae-best run-gan run-experiments bench mc-vs-is results clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

test: $(STAMP)
	DATA_DIR=$(DATA_DIR) $(PY) -m pytest -q

run: $(STAMP)
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory -j2 run-gan run-vae-mc

run-vae-mc: run-vae
	$(MAKE) --no-print-directory mc-vs-is

run-vae: $(STAMP)
	$(VAE) --zdim 20
	$(VAE) --zdim 2
	$(VAE) --zdim 5
	$(VAE) --zdim 10

# Below the published 88.56 nats (see README).
run-vae-best: $(STAMP)
	$(PY) a3_vae_template.py --data_dir $(DATA_DIR) --out_dir $(OUT_DIR)/vae_best $(RUN_FLAGS) \
		--zdim 40 --epochs 100 --keep_best --iw_samples 5000

run-gan: $(STAMP)
	$(PY) a3_gan_template.py --data_dir $(DATA_DIR) --out_dir $(OUT_DIR) --dataset $(GAN_DATASET) \
		$(RUN_FLAGS)

# Question 1.4: needs $(OUT_DIR)/vae_z{2,5,10,20}_model.pt from run-vae.
mc-vs-is: $(STAMP)
	$(PY) -m experiments.vae_mc_vs_is --data_dir $(DATA_DIR) --out_dir $(OUT_DIR)

# 3 seeds x 2 recipes x 10 epochs per data set: about 20 min each on one core;
# the first-epoch and architecture studies: a few minutes; the score's noise
# (about 5 min) needs the GAN of run-gan in $(OUT_DIR).
run-experiments: $(STAMP)
	$(PY) -m experiments.gan_early --data_dir $(DATA_DIR) --out $(OUT_DIR)/gan_early.json
	$(PY) -m experiments.vae_activations --data_dir $(DATA_DIR) \
		--out $(OUT_DIR)/vae_activations.json
	$(PY) -m experiments.gan_remedy --data_dir $(DATA_DIR) --dataset mnist --n_epochs 10 \
		--out $(OUT_DIR)/gan_remedy_mnist.json
	$(PY) -m experiments.gan_remedy --data_dir $(DATA_DIR) --dataset bmnist --n_epochs 10 \
		--out $(OUT_DIR)/gan_remedy_bmnist.json
	$(PY) -m experiments.score_noise --data_dir $(DATA_DIR) --run_dir $(OUT_DIR) \
		--out $(OUT_DIR)/score_noise.json

bench: $(STAMP)
	$(PY) -m bench.bench_vae --data_dir $(DATA_DIR) --out $(OUT_DIR)/bench_vae.json
	$(PY) -m bench.bench_gan --data_dir $(DATA_DIR) --out $(OUT_DIR)/bench_gan.json
	$(PY) -m bench.bench_step --data_dir $(DATA_DIR) --out $(OUT_DIR)/bench_step.json

results: $(STAMP)
	$(PY) -m report.results --out_dir $(OUT_DIR)

clean:
	rm -rf $(VENV) .pytest_cache __pycache__ */__pycache__

# make report     - build report/report.pdf (numbers from images/*.json through
#                   report/make_results.py; installs TeX Live when pdflatex is
#                   missing). NAME="First Last" (and STUDENT_ID=...) fill the
#                   author line; STRICT=1 also fails on missing figures or numbers,
#                   a figure away from its question, an answer over its length.
# make submission NAME="First Last" - lastname_assignment3.zip: report.pdf beside
#                   code/, which holds all code with its paths kept (the course
#                   repository's layout); no data, .venv, caches or weights.
STRICT ?= 0
NAME ?=
STUDENT_ID ?=
ZIP = $(shell echo "$(NAME)" | awk '{print tolower($$NF)}' | tr -cd 'a-z0-9_-')_assignment3.zip
SUBMISSION_FILES = git ls-files -- '*.py' README.md 'docs/*.md' requirements.txt Makefile pytest.ini \
	'report/*.tex' 'report/*.bib' report/build.sh ':!report/results.tex'

.PHONY: report submission

report:
	PYTHON=$(PYTHON) STRICT=$(STRICT) NAME="$(NAME)" STUDENT_ID="$(STUDENT_ID)" report/build.sh

# A submission needs every figure and number and the student's name.
submission: STRICT = 1
submission:
	@test -n "$(NAME)" || { echo 'error: make submission needs NAME="First Last" (the author line)' >&2; exit 2; }
	$(MAKE) --no-print-directory report STRICT=$(STRICT) NAME="$(NAME)" STUDENT_ID="$(STUDENT_ID)"
	rm -f $(ZIP)
	$(SUBMISSION_FILES) | $(PYTHON) -c "import sys, zipfile; \
	z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED); \
	z.write('report/report.pdf', 'report.pdf'); \
	[z.write(f, 'code/' + f) for f in sys.stdin.read().split()]; \
	print('\n'.join(z.namelist())); z.close()" $(ZIP)
	@echo "wrote $(ZIP)"
