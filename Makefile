# activethief: `make demo` and `make test` work on a fresh clone with nothing installed by hand.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO := runs/demo
# Two cores: one torch process at a time, using both.
export OMP_NUM_THREADS ?= 2

.PHONY: venv data demo test lint format bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,serve,ray]'
	touch $@

data: venv
	$(BIN)/activethief data fetch mnist fashion-mnist mnist-on-photos

demo: data
	@test -f $(DEMO)/target.pt || $(BIN)/activethief train-target --dataset mnist --arch cnn2 --out $(DEMO)/target.pt --quiet
	rm -rf $(DEMO)/steal
	$(BIN)/activethief steal --target $(DEMO)/target.pt --pool mnist --test mnist --budget 3000 \
		--batch-size 1000 --strategy entropy+kcenter --out $(DEMO)/steal --quiet

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: venv
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

test: data lint
	$(BIN)/pytest -q

bench: data
	$(BIN)/python benchmarks/training_speed.py
	$(BIN)/python benchmarks/kcenter_speed.py
	$(BIN)/python benchmarks/query_efficiency.py

clean:
	rm -rf $(VENV) runs/demo .mypy_cache .ruff_cache .pytest_cache
