# Two commands for users: `make train` and `make test`. Each creates or updates .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ocrtrain-installed
TORCH_PIN := torch==2.13.0
ARGS ?=

.PHONY: train test lint typecheck unit fonts browser bench clean demo

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ocrtrain needs Python 3.11+, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	@touch $@

# Families no recipe trains on (data.held_out_families), drawn by bench/unseen_engine.py; with
# Pango and cairo, which it draws with.
HELD_OUT_FONT_PACKAGES := fonts-roboto-unhinted fonts-lato fonts-inter fonts-firacode \
  fonts-crosextra-carlito fonts-paratype fonts-noto-mono fonts-cantarell fonts-ocr-b \
  libpangocairo-1.0-0
# Fonts are optional: training and tests work with Pillow's bundled font alone. More font
# families make a model that reads unseen fonts better (configs/data/synth_receipts.yaml).
FONT_PACKAGES := fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-urw-base35 \
  fonts-freefont-ttf fonts-go fonts-open-sans fonts-ebgaramond fonts-crosextra-caladea \
  fonts-linuxlibertine fonts-courier-prime fonts-inconsolata fonts-hack fonts-sil-gentiumplus \
  fonts-sil-charis fonts-vollkorn fonts-adf-baskervald fonts-oldstandard fonts-adf-accanthis \
  fonts-quattrocento fonts-jetbrains-mono fonts-sil-andika fonts-comic-neue fonts-oxygen \
  fonts-hermit fonts-anonymous-pro fonts-tuffy fonts-junicode fonts-league-spartan fonts-b612 \
  fonts-dosis fonts-quicksand fonts-mononoki fonts-fantasque-sans fonts-comfortaa fonts-karla \
  fonts-clear-sans fonts-averia-gwf \
  $(HELD_OUT_FONT_PACKAGES)
fonts:
	@missing=$$(for p in $(FONT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -q $$missing >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$missing >/dev/null 2>&1)) || \
	  echo "note: could not install all fonts ($$missing); training uses the fonts found"; \
	fi

# Debian's chromium for the end-to-end browser tests; they are skipped where it cannot be had.
browser:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
	    echo "note: could not install chromium; browser tests will be skipped"; \
	  fi; \
	fi

train: $(STAMP) fonts
	$(BIN)/python runners/train.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench runners scripts
	$(BIN)/ruff format --check src tests bench runners scripts

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) fonts browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

# Benchmarks print tables (see README, Performance); none of them is part of `make test`.
bench: $(STAMP)
	$(BIN)/python bench/orphans.py
	$(BIN)/python bench/dist_faults.py
	$(BIN)/python bench/ps_bench.py
	$(BIN)/python bench/web_bench.py
	$(BIN)/python bench/train_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
