"""Publishing: model cards from a Jinja template (``cards.py``, ``model_card_template.md``), the checked upload
to the Hub (``hub.py``), and GGUF files in (``gguf_convert.py``) and out (``gguf_export.py``)."""
