# qupaint developer entry points. README names two: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of torch on machines without a GPU (an unpinned torch pulls a multi-GB CUDA build).
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.qupaint-installed
SOURCES := pyproject.toml CMakeLists.txt $(shell find csrc -type f 2>/dev/null)
PYTEST_ARGS ?=

.PHONY: install demo test bench bench-check lint clean check-nocuda gpu-check wheelhouse docs tiny-data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Build deps are installed into the venv and the package is built without isolation, so the
# extension builds once into build/ and rebuilds only when csrc/ or the build files change.
$(STAMP): $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" ninja
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[all,docs,test,bench,dev,dask,lora,postgres]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/qupaint demo --out demo_out

# The suite plus every docstring example (so documented outputs stay true).
# pytest exit code 5 means "no tests collected": report it loudly but do not fail.
test: $(STAMP)
	@$(BIN)/python -m pytest tests qupaint --doctest-modules $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "WARNING: pytest collected no tests"; exit 0; fi; exit $$rc

# The documentation site (MkDocs, Material theme; the API pages from the docstrings by
# mkdocstrings), built with --strict so a broken link or reference fails; CI builds it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir build/site

# The data configs/tiny.yaml trains on: 64 Synthia images and their QMat-Instruct corpus.
tiny-data: $(STAMP)
	$(BIN)/qupaint synthia --out data/synthia --num-images 64 --size 256
	$(BIN)/qupaint instruct --coco data/synthia/annotations.json --out data/qmat

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-only --benchmark-columns=min,median,mean,rounds \
		--benchmark-json=benchmarks/results/latest-$$(hostname).json $(PYTEST_ARGS)

# The regression gate: a short benchmark subset; fails when a kernel falls below its stated
# ratio to its peer in the same run (benchmarks/gates.json). CI runs it after the tests.
bench-check: $(STAMP)
	$(BIN)/python scripts/bench_check.py

# A build with QUPAINT_CUDA=OFF (what a user without the CUDA toolkit gets), in its own build
# folder and install target; CI runs it after the tests.
check-nocuda: $(STAMP)
	rm -rf build/nocuda-wheel build/nocuda-site
	QUPAINT_CUDA=OFF $(BIN)/python -m pip wheel -q --no-build-isolation --no-deps \
		-w build/nocuda-wheel -Cbuild-dir=build/nocuda .
	$(BIN)/python -m pip install -q --no-deps --target build/nocuda-site build/nocuda-wheel/*.whl
	$(BIN)/python scripts/check_nocuda.py $(CURDIR)/build/nocuda-site

# On a GPU machine (e.g. through the device tool): build with CUDA for this GPU, run the CUDA
# and Triton tests and the GPU benchmarks, save results; without a GPU it says so, exit 0.
gpu-check:
	bash scripts/gpu_check.sh

# Wheels a bare GPU image (python 3.12 with torch, triton, scipy, transformers, pytest, ...)
# lacks, into .whl/ (ignored by git), for gpu-check there.
WHEEL_PY ?= 3.12
wheelhouse: $(BIN)/python
	rm -rf .whl && mkdir -p .whl
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version $(WHEEL_PY) \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d .whl \
		tmm colour-science pycocotools faster-coco-eval orjson isal

lint: $(STAMP)
	$(BIN)/ruff check qupaint tests benchmarks
	$(BIN)/ruff format --check qupaint tests benchmarks

clean:
	rm -rf build demo_out .pytest_cache
