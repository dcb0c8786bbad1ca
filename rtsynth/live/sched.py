"""Real-time scheduling for the threads that take the GIL while audio runs (play's main loop,
JACK's notification thread). Its own module: the player and the JACK driver both use it."""

import os
import sys
import threading


#: the main thread's real-time priority while play runs (below the generator's and JACK's)
MAIN_RT_PRIORITY = 1


def realtime_thread(priority: int = MAIN_RT_PRIORITY) -> bool:
    """Real-time scheduling (``SCHED_FIFO`` at ``priority``) for the calling thread, where the
    system allows it; returns whether it got it.

    For the threads that take the GIL while audio runs (play's main loop, JACK's notification
    thread): one of them preempted by another process while it holds the GIL makes the
    audio callback wait for the GIL until it runs again, on a loaded machine for milliseconds
    (an xrun the server blames on rtsynth, with the block itself short). As a real-time thread
    it is not preempted by ordinary processes; it sleeps most of the time, so it takes little.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO,
                              os.sched_param(priority))
        return True
    except (OSError, AttributeError):
        return False


def ordinary_thread() -> None:
    """The calling thread back to ordinary scheduling (after :func:`realtime_thread`)."""
    try:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_OTHER, os.sched_param(0))
    except (OSError, AttributeError):
        pass
