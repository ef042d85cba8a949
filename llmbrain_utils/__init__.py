"""llmbrain: couple sub-groups of language-model neurons with the brain's functional networks.

The helper package behind the book's notebooks. One module per pipeline stage; no stage
imports a later one:

stimuli -> models/extract -> dictionary -> fmri/encoding -> fbn -> compare
store (artifacts), pipeline (papermill runs), plotting and cli serve them all.
"""

__version__ = "0.1.0"
