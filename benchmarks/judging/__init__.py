"""What is done with result files: validate them, re-run one (verify), compare results, and build the leaderboard.
Imports the layers below it, never the command line.
"""
