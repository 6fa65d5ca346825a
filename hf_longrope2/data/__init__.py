"""Data: text sources (``texts.py``), mixtures of tokenised sources (``mixture.py``), needle samples
(``needles.py``, the search objective) and mixed-window packing for midtraining (``packing_plan.py`` plans from
lengths, ``packing.py`` writes the rows)."""
