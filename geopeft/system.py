"""What the machine offers this process."""

import os


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity where the OS tells it)."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1
