"""Small utilities every layer above uses: atomic files and folders (``atomic.py``), the one flag/YAML parser
(``arguments.py``), model-folder checks before any work (``loading.py``), and versions, dtypes and the cache
folder (``environment.py``)."""
