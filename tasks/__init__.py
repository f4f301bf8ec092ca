"""The Taskiq process entry points above the service: the worker's broker and the scheduler."""
