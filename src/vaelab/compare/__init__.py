"""The ``compare`` stage: the studies' claims, the remedies, the one-knob sweeps and compare.md."""
