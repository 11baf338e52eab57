"""The run journal: its store, its directories, ``runs``/``show`` and the HTML report."""
