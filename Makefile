.PHONY: test lint bench bench-quick

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
