.PHONY: test lint bench bench-quick bench-save bench-save-quick

test:
	python -m pytest

lint:
	ruff check src tests bench
	ruff format --check src tests bench
	mypy src

bench:
	python bench/load_bench.py --size 4GiB --shards 2 --out bench/results/load-4GiB.json

bench-quick:
	python bench/load_bench.py --size 1GiB --shards 2 --no-cold

bench-save:
	python bench/save_bench.py --size 4GiB --out bench/results/save-4GiB.json

bench-save-quick:
	python bench/save_bench.py --size 1GiB
