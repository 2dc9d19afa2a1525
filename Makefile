# DL Milestones. `make help` lists the targets. `make demo` and `make test` work as the first command on a fresh
# clone: both depend on `setup`, which is a no-op once done.
PYTHON ?= python3
VENV ?= .venv
# Every version `make setup` installs, exact (refresh: `make lock`). PyTorch is installed first: the lock's build by
# default, or another with TORCH_SPEC='torch==2.5.1 torchvision==0.20.1' (then the lock's other packages, less those
# that PyTorch brought with it).
CONSTRAINTS := constraints.txt
TORCH_LOCKED := $(shell grep -E '^(torch|torchvision)==' $(CONSTRAINTS))
TORCH_SPEC ?= $(TORCH_LOCKED)
BIN := $(VENV)/bin
MILESTONES := $(BIN)/milestones
STAMP := $(VENV)/.setup-done
TASK ?=
ARGS ?=
RESULT ?=
RESULTS ?=
WHAT ?=

.DEFAULT_GOAL := help
# glibc returns every freed block over 32 MB to the OS, so each large activation is page-faulted in again: AlexNet
# trains 1.6x slower on a CPU that way. Keep freed memory in the heap instead (override by setting it yourself).
export GLIBC_TUNABLES ?= glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736

.PHONY: help setup lock demo test test-fast lint leaderboard leaderboard-check validate verify compare perf perf-overhead perf-images perf-commands perf-scaling perf-ddp perf-env feature-nets probe gpu-check gpu-carry gpu-campaign list clean

help: ## list the targets
	@grep -hE '^[a-zA-Z%_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 22
	@echo "bench-<entry>         run an entry, e.g. make bench-lenet5 (TASK=fashion-mnist, ARGS='--seeds 0')"
	@echo "entries:              $$(ls benchmarks/configs | sed 's/\.yaml$$//' | tr '\n' ' ')"

setup: $(STAMP) ## virtualenv + all dependencies (a no-op once done)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
ifeq ($(strip $(TORCH_SPEC)),$(strip $(TORCH_LOCKED)))
	$(BIN)/pip install -c $(CONSTRAINTS) $(TORCH_SPEC)
	$(BIN)/pip install -c $(CONSTRAINTS) -e '.[dev]'
else
	$(BIN)/pip install $(TORCH_SPEC)
	$(BIN)/pip freeze --exclude-editable | sed -E 's/[=@ ].*//' > $(VENV)/torch-stack.txt
	grep -viE "^($$(paste -sd'|' $(VENV)/torch-stack.txt))==" $(CONSTRAINTS) > $(VENV)/constraints-other-torch.txt
	$(BIN)/pip install -c $(VENV)/constraints-other-torch.txt -e '.[dev]'
endif
	touch $(STAMP)

lock: ## refresh constraints.txt: the newest versions pyproject.toml allows, in a fresh venv, frozen (then make setup)
	rm -rf $(VENV)-lock
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install $(TORCH_SPEC)
	$(VENV)-lock/bin/pip install -e '.[dev]'
	{ grep '^#' $(CONSTRAINTS); $(VENV)-lock/bin/pip freeze --exclude-editable; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(VENV)-lock
	@echo "constraints.txt refreshed: review the diff, run make setup and make test, commit it"

demo: setup ## offline: early milestones on the bundled digits + logic gates, then a leaderboard (33 s on the 2-core CI machine)
	$(MILESTONES) demo $(ARGS)

test: setup ## the test suite (what CI runs); real-data tests need MILESTONES_DATA
	$(BIN)/python -m pytest -q --durations=15 $(ARGS)

test-fast: setup ## the tests less the slow ones (subprocesses that train): 2 min on 2 cores, not 10
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

lint: setup ## ruff
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

list: setup ## the registered entries
	$(MILESTONES) list

bench-%: setup ## run an entry's benchmark and write a result file
	$(MILESTONES) bench $* $(if $(TASK),--task $(TASK)) $(ARGS)

leaderboard: setup ## regenerate leaderboards/ (README.md, leaderboard.csv, plots) from the result files
	$(MILESTONES) leaderboard

leaderboard-check: setup ## fail when the committed leaderboard differs from the result files
	$(MILESTONES) leaderboard --check

validate: setup ## check result files as CI does on a pull request (default: all of leaderboards/results)
	$(MILESTONES) validate $(RESULTS)

verify: setup ## re-run a result and check it: make verify RESULT=leaderboards/results/mnist/mlp/<file>.json
	@test -n "$(RESULT)" || { echo "usage: make verify RESULT=<result.json> [ARGS='--seeds 0']"; exit 2; }
	$(MILESTONES) verify $(RESULT) $(ARGS)

compare: setup ## results side by side: make compare WHAT='lenet5 lenet5-modern' [ARGS='--task mnist']
	$(MILESTONES) compare $(WHAT) $(ARGS)

perf: setup ## epoch time of LeNet-5 on MNIST: plain PyTorch loop vs harness vs DataLoader+ToTensor
	$(BIN)/python -m benchmarks.perf.lenet_epoch $(ARGS)

perf-overhead: setup ## where the harness's time per step goes: a near-free model, Lightning plus each harness part
	$(BIN)/python -m benchmarks.perf.harness_overhead $(ARGS)

perf-images: setup ## training img/s of AlexNet: cached uint8 tensor pipeline vs ImageFolder + PIL + DataLoader
	$(BIN)/python -m benchmarks.perf.images $(ARGS)

perf-commands: setup ## seconds of list, tasks, --help, bench --help (< 2 s) and validate (< 10 s), fresh processes
	$(BIN)/python -m benchmarks.perf.commands $(ARGS)

perf-scaling: setup ## validate and leaderboard on 1,000 and 10,000 synthetic result files: linear, < 2 min at 10,000
	$(BIN)/python -m benchmarks.perf.scaling $(ARGS)

feature-nets: setup ## retrain the committed feature nets (changes every score made with them; style-vgg ~1 h)
	$(MILESTONES) feature-net mnist && $(MILESTONES) feature-net fashion-mnist && $(MILESTONES) feature-net fsdd-digits \
	&& $(MILESTONES) feature-net imagenette-224re --threads 2 --precision bf16-mixed

probe: setup ## receptive fields of a trained network, e.g. ARGS='--feature-net mnist' or ARGS='--result <file>'
	$(MILESTONES) probe $(ARGS)

perf-ddp: setup ## samples/s of lenet5-modern at world size 1 and 2 through the harness (leaderboards/perf/)
	$(BIN)/python -m benchmarks.perf.ddp_scaling $(ARGS)

perf-env: setup ## environment steps/s of dqn-cartpole: the harness vs a bare loop of the same agent (leaderboards/perf/)
	$(BIN)/python -m benchmarks.perf.environment_steps $(ARGS)

gpu-check: setup ## on a GPU: every entry briefly in bf16-mixed and 16-mixed, the full lenet5-modern run; DDP on 2+ GPUs
	$(BIN)/python -m benchmarks.tools.gpu_check $(ARGS)

# The lent GPU machine gets the checkout plus one ignored folder; it has no .venv (its python3 holds torch).
GPU_CARRY := .gpu-data
# the carried wheels are installed there, where the GPU machine's python3 finds them (device.py: WHEEL_INSTALL)
GPU_SITE := /tmp/milestones-site
CAMPAIGN_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)

gpu-carry: setup ## build .gpu-data (data sha256-checked + wheels) in parts of one device call each; CALLS.md says how
	$(BIN)/python -m benchmarks.tools.campaign.carry $(ARGS)

gpu-campaign: ## on the lent GPU: 3-seed rows for as many jobs as fit 10 min (ARGS='--plan', ARGS='--dry-run' here)
	@test ! -f $(GPU_CARRY)/part-1/PART.json || $(CAMPAIGN_PYTHON) -m benchmarks.tools.campaign.device assemble
	@$(CAMPAIGN_PYTHON) -c 'import datasets, pydantic, jsonargparse, platformdirs' 2>/dev/null || test ! -d $(GPU_CARRY)/wheels \
	|| $(CAMPAIGN_PYTHON) -m pip install -q --no-index --no-deps --no-compile --upgrade --target $(GPU_SITE) $(GPU_CARRY)/wheels/*.whl
	PYTHONPATH=$(GPU_SITE)$${PYTHONPATH:+:$$PYTHONPATH} $(CAMPAIGN_PYTHON) -m benchmarks.tools.campaign $(ARGS)

clean: ## remove run outputs (checkpoints, logs, W&B offline runs); results and data are untouched
	rm -rf runs lightning_logs
