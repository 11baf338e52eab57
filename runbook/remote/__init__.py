"""Code that runs on the target hosts. ``executor.py`` is sent as source over the channel.

Nothing here may import from ``runbook``: the executor runs alone, on whatever
``python3`` (3.6+) the host has.
"""
