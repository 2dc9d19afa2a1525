"""The GPU campaign (issue 22): on one lent GPU, full-protocol rows (3 seeds, bf16-mixed) for as many flagship entries
as fit in a time window, several entries at once on the one GPU, each process pinned to its share of the CPU cores.

    jobs.py       the declared jobs, in order of value, and what each needs on the GPU machine
    carry.py      the one ignored folder that travels with the checkout (data + wheels), built and checked, in parts
    device.py     the parts' trip: one device call each, back to back, then joined and checked there (stdlib only)
    calibrate.py  one short, measured run of a job (a child process): its per-step and per-epoch costs
    planner.py    packing the jobs into the window from those measurements (pure, unit-tested)
    runner.py     the job processes: pinned, logged, each result written atomically, resumable
    bundle.py     the results, logs and plan in one .tgz for the trip back, and unpacked here for the leaderboard
    __main__.py   python -m benchmarks.tools.campaign [--plan | --dry-run]   (make gpu-campaign)
"""
