"""Generic training machinery: the Task interface, stages, optimizer, checkpoints, train state, restoring runs, the loop."""
