"""Bridges to other toolkits' own decoding code (importing one needs that toolkit installed).

* :mod:`.espnet_ps2st`: ESPnet's Qwen2-Audio decoding (``espnet2/ps2st``) with a reduction.
"""
