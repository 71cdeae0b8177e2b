# nps-link: the commands the README promises. Every target that runs code calls `setup` first,
# which is a no-op when pyproject.toml and constraints.txt have not changed since the last install.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPARK_STAMP := $(VENV)/.installed-spark
SPARK_CUSTOMERS ?= 10000
# The data dir of `make demo` and `make docs`: NPS_LINK_DATA_DIR's, as for every other command.
DATA_DIR ?= $(or $(NPS_LINK_DATA_DIR),./data)
SCALE ?= S
export GX_ANALYTICS_ENABLED := False
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: setup setup-browser setup-spark demo dev test lint docs bench test-spark clean

setup: $(STAMP) $(DAGSTER_HOME)/dagster.yaml

# The instance settings (run queue, run monitoring): copied into the repository's own instance
# (.dagster_home) whenever the repository's copy is newer; an instance of your own (DAGSTER_HOME set
# elsewhere, perhaps with other storage) gets them only when it has no dagster.yaml yet, and a note
# when its file differs, never an overwrite.
$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	@if [ ! -f $@ ] || [ "$$(cd $(DAGSTER_HOME) && pwd -P)" = "$$(cd $(CURDIR) && pwd -P)/.dagster_home" ]; then \
		cp dagster.yaml $@ && echo "copied dagster.yaml to $@"; \
	elif ! cmp -s dagster.yaml $@; then \
		echo "note: $@ differs from the repository's dagster.yaml (run queue, run monitoring); merge it by hand"; \
	fi

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# Debian's Chromium for the report's browser test (the test tool's own browser download cannot work
# here), and a CJK font so the Japanese report renders glyphs, not boxes.
setup-browser:
	@{ command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -q "Noto Sans CJK"; } || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; }

demo: setup
	$(BIN)/nps-link demo-data --data-dir $(DATA_DIR) --customers 3000 --seed 7
	$(BIN)/nps-link run --data-dir $(DATA_DIR)

# The Dagster UI with the daemon (schedule, sensor, run queue and monitoring), keeping run history in
# $(DAGSTER_HOME) like `nps-link run` started from make: without DAGSTER_HOME, `dagster dev` keeps it in
# a temporary folder it deletes on exit.
dev: setup
	$(BIN)/dagster dev -w workspace.yaml

test: setup setup-browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

docs: setup
	$(BIN)/nps-link docs --data-dir $(DATA_DIR)

# The `spark` extra (dbt-spark, pyspark) on top of the dev install, and a Java runtime for Spark 4: the
# machine's Java if it is 17 or later ($JAVA_HOME's, else the one on PATH), else Debian's OpenJDK 17
# (needs root/apt, like setup-browser).
setup-spark: $(SPARK_STAMP)
	@major=$$("$${JAVA_HOME:+$$JAVA_HOME/bin/}java" -version 2>&1 | sed -n 's/.* version "\(1\.\)\{0,1\}\([0-9]*\).*/\2/p' | head -n 1); \
	[ "$${major:-0}" -ge 17 ] 2>/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }

$(SPARK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,spark]"
	touch $(SPARK_STAMP)

# The same dbt project on DuckDB and on local Spark from the same lake; every marts table compared
# (tests/spark/compare.py), at the S scale of issue 7 (10,000 customers: 2 min 47 s measured here).
test-spark: setup-spark
	$(BIN)/python -m tests.spark.compare --customers $(SPARK_CUSTOMERS)

bench: setup
	$(BIN)/python -m tests.bench.run --scale $(SCALE)

clean:
	rm -rf $(DATA_DIR) dbt_project/target dbt_project/logs .pytest_cache
