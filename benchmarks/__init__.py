"""The DL Milestones harness: registry of entries, tasks (data + metric contract), runs, result files, leaderboard."""
