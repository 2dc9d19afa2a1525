"""The records and facts everything else stands on: paths, the result schema and its atomic writes, the machine's
and the code's identity, statistics, checksums and the fault-injection points. Imports nothing else of benchmarks/.
"""
