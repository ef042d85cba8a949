"""llmbrain: couple sub-groups of language-model neurons with the brain's functional networks.

The helper package behind the book's notebooks, in five layers (lowest first; a module never
imports a higher layer, and the imports have no cycle: ``tests/test_layers.py``):

- foundation: errors, _io, _validation, stats, devices, progress, store;
- science: fetch, stimuli, models, layerwise, extract, dictionary, encoding, fmri, surface,
  fbn, compare, netsignal, explorer, plotting;
- parameters: config;
- stages: stages (every stage declared once in ``stages.TABLE``), sweep, headlines;
- application: runfolder, pipeline, cli.

See ARCHITECTURE.md at the repository root.
"""

__version__ = "0.1.0"
