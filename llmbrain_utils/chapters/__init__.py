"""What the chapters show: one module per chapter (``chapters.fmri`` for
``notebooks/03_fmri_data.py``, ...), each a few functions that read a stage's artifacts and
draw a figure, print a summary or state a verdict.

The notebooks stay short narrative over these calls (at most about 60 code lines each,
``tests/test_notebook_sources.py``); what a chapter computes is here, where it is linted,
imported and testable like the rest of the package. The layer sits above the stages (it reads
their artifacts) and below the application (the runner executes the notebooks that call it).
None of it is part of an artifact's key: presenting a result never changes it.
"""
