"""One module per tokenizer kind; :mod:`livetok.tokenizers.registry` lists them."""
