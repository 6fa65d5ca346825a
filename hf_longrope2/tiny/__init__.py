"""Everything tiny, for CPUs and tests: random tiny models of every architecture and a character tokenizer
(``models.py``), the shipped pretrained base (``base.py`` and ``tiny_base/``), its pretraining rows
(``pretraining.py``), the demo's midtraining corpus (``recall_data.py``), and the loader run in a fresh
interpreter without hf_longrope2 (``_isolated_load.py``)."""
