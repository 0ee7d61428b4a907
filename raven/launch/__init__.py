"""submitit launcher: run a stage command locally, in-process (debug) or on SLURM, requeued on preemption."""

from raven.launch.submit import LaunchError, StageCommand, launch, launcher_for, make_executor, submit_and_wait

__all__ = ["LaunchError", "StageCommand", "launch", "launcher_for", "make_executor", "submit_and_wait"]
