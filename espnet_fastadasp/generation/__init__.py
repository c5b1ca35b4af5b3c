"""Decoding around a reduced prefill: the beam search with one shared prompt cache
(``shared_prompt``), the fixed-shape static path (``static_decoding`` with ``static_cache`` and
``static_search``), only the last prompt position through the LM head (``logits``) and the fix of
transformers' beam search over multi-clip prompts (``fixes``). Uses :mod:`espnet_fastadasp.reduction`
and :mod:`espnet_fastadasp.models`; nothing there uses this package."""
