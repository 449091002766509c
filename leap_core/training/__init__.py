"""The training engine: schedules, data setup, checkpoints, hooks and the trainer."""
