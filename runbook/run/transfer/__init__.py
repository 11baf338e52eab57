"""``copy`` and ``fetch`` at apply time: content, comparison, local and remote writes."""
