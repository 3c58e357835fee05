"""Print "ready", then sleep forever in silence (a stalled trainer). SIGTERM kills it.

Usage: hang.py
"""

import signal

print("ready", flush=True)
while True:
    signal.pause()
