# Two entry points, each installing what it needs into .venv first:
#   make demo   cartoon-style a real sample clip, embedded mode (no servers)
#   make test   lint and the whole test suite (needs PostgreSQL, see README)

PYTHON ?= python3
VENV ?= .venv
# The CPU build of PyTorch; on a CUDA machine set TORCH to the build you want.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint bench bench-distributed bench-matte

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	$(BIN)/frameq models pull
	touch $@

demo: $(VENV)/.installed
	$(BIN)/frameq run "$$($(BIN)/python -m frameq.samples bigbuckbunny)" -o out/bigbuckbunny-cartoon.mp4 -r cartoon

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/run_vs_loop.py

bench-distributed: $(VENV)/.installed
	$(BIN)/python bench/distributed.py

# Person matting quality and speed beside MediaPipe and Robust Video Matting (needs the DAVIS
# development set and Node.js for the latter).
DAVIS ?= ../shared/data/davis-dev
MASKS ?= out/masks
bench-matte: $(VENV)/.installed
	bench/mediapipe_env.sh
	.venv-mediapipe/bin/python bench/mediapipe_baseline.py masks --davis $(DAVIS) --out $(MASKS)
	bench/rvm_env.sh
	$(BIN)/python bench/rvm_baseline.py --davis $(DAVIS) --out $(MASKS)
	$(BIN)/python bench/matte_frameq.py --davis $(DAVIS) --out $(MASKS)
	$(BIN)/python bench/matte_frameq.py --davis $(DAVIS) --out $(MASKS) --landmark full --variant frameq-full
	$(BIN)/python bench/matte_frameq.py --davis $(DAVIS) --out $(MASKS) --no-refine --variant frameq-no-refine
	$(BIN)/python bench/matte_frameq.py --davis $(DAVIS) --out $(MASKS) --no-temporal --variant frameq-no-temporal
	$(BIN)/python bench/matte_product.py --davis $(DAVIS) --out $(MASKS)
	for turns in 1 2; do \
	  $(BIN)/python bench/matte_frameq.py --davis $(DAVIS) --out $(MASKS) --turns $$turns; \
	  .venv-mediapipe/bin/python bench/mediapipe_baseline.py masks --davis $(DAVIS) --out $(MASKS) \
	    --methods mp-pose-heavy --turns $$turns; \
	done
	$(BIN)/python bench/matte_frameq.py --davis $(DAVIS) --out $(MASKS) --miss-every 3
	$(BIN)/python bench/matte_quality.py --davis $(DAVIS) --masks $(MASKS)
	$(BIN)/python bench/matte_speed.py --davis $(DAVIS)
