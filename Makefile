# lrkit: two commands matter.
#   make demo   set everything up on a fresh machine, then run the main job
#   make test   run the test suite (what CI runs, through .ci/run)

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= lrkit-gallery

.PHONY: setup demo gallery docs docs-serve test browser postgres lint bench clean

setup: $(STAMP)

# torch==2.13.0 first: pip takes the CPU build on disk, and the [torch]
# extra's range then accepts it, so no multi-GB CUDA build is pulled.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[all]"
	# timm is the reference for lrkit.torch.create_scheduler_v2's tests; its
	# torchvision would pull another torch, and timm.scheduler needs none of it.
	$(BIN)/python -m pip install --quiet --no-deps "timm==1.0.31"
	touch $(STAMP)

# The main job: `lrkit compare` on its built-in default grid (4 optimizers x
# 3 schedules x 5 lrs x 2 seeds on digits and scales), written to lrkit-report/.
# A rerun resumes from lrkit-report/runs.sqlite.
demo: setup
	$(BIN)/lrkit compare

# A gallery of schedules: $(OUT)/schedules.png and a table.
GALLERY := \
	"cosine(lr=0.1, steps=1000, min_lr=0.001)" \
	"warmup(cosine(lr=0.1, steps=900), steps=100)" \
	"wsd(lr=0.1, steps=1000, warmup_steps=50, decay_steps=0.2)" \
	"one_cycle(max_lr=0.1, steps=1000)" \
	"cosine_restarts(lr=0.1, period=200, period_mult=2, decay=0.7)" \
	"multistep(lr=0.1, milestones=[300, 600, 900])"

gallery: setup
	$(BIN)/lrkit schedule $(GALLERY) --steps 1000 --format png --out $(OUT)/schedules.png
	$(BIN)/lrkit schedule $(GALLERY) --steps 1000 --format table

# The documentation site (mkdocs.yml) into site/: open site/index.html. Offline
# (no web fonts, CDN or analytics); the guides' examples run during the build
# and a failing one, or one printing something else than its page, fails it.
# NO_MKDOCS_2_WARNING: Material 9.8's banner about MkDocs 2 (not a build warning).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The same site served at http://127.0.0.1:8000, rebuilt on every change.
docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict

test: setup browser postgres
	$(BIN)/python -m pytest -n 2 --dist loadgroup -p no:cacheprovider

# The report test opens report.html in headless Chromium: Debian's package,
# installed when missing (needs root or sudo; CI runs as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# The shared-study tune tests start a throwaway PostgreSQL server (initdb, pg_ctl):
# Debian's package, installed when missing (its binaries are in /usr/lib/postgresql/N/bin).
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }

lint: setup
	$(BIN)/ruff check src tests benchmarks examples docs/hooks
	$(BIN)/ruff format --check src tests benchmarks examples docs/hooks

bench: setup
	$(BIN)/python benchmarks/schedule_values.py

clean:
	rm -rf $(VENV) $(OUT) lrkit-report site .pytest_cache .hypothesis
