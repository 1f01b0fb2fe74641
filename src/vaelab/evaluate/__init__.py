"""The ``evaluate`` stage: metrics, figures and experiments on trained variants."""
