.PHONY: test lint bench bench-paged bench-compile bench-ready bench-quick bench-remote bench-cache bench-save bench-save-quick bench-swarm bench-swarm-load

test:
	python -m pytest

lint:
	ruff check src tests bench
	ruff format --check src tests bench
	mypy src

bench:
	python bench/load_bench.py --size 4GiB --shards 2 --wide --out bench/results/load-4GiB.json

bench-quick:
	python bench/load_bench.py --size 1GiB --shards 2 --no-cold

bench-remote:
	python bench/remote_bench.py --size 1GiB --repeat 1 --no-s3 --out bench/results/remote-1GiB.json
	python bench/remote_bench.py --dir /tmp/pagefault-remote-bench-s3 --size 256MiB --repeat 2 --no-http --out bench/results/remote-s3-256MiB.json

bench-cache:
	python bench/cache_bench.py --size 4GiB --repeat 3 --processes 4 --out bench/results/cache-4GiB.json

bench-save:
	python bench/save_bench.py --size 4GiB --out bench/results/save-4GiB.json

bench-save-quick:
	python bench/save_bench.py --size 1GiB

bench-swarm:
	python bench/swarm_bench.py --nodes 1,4,8,16 --out bench/results/swarm-64MiB-25mbit-chain.json

bench-compile:
	python bench/compile_bench.py --out bench/results/compile-cpu.json

bench-paged:
	python bench/paged_bench.py --rounds 3 --png docs/paged.png --out bench/results/paged-cpu.json

bench-ready:
	python bench/ready_bench.py --png docs/ready.png --out bench/results/ready-cpu.json

bench-swarm-load:
	python bench/swarm_bench.py --nodes 1,4,8,16 --load --out bench/results/swarm-load-64MiB-25mbit.json
