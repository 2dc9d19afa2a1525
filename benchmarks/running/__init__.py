"""Entries and runs: the registry of entry configs (checked against their tasks' interfaces), reference numbers the
suite computes, and the harness that runs one entry on one task for its seeds (callbacks, atomic checkpoints, the
run folder). Imports core/, scoring/ and tasks/.
"""
