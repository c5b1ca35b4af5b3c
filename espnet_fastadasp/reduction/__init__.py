"""The reduction itself, inside a transformers decoder: ``patch.apply`` installs it; a prefill's
layout (``prefill``), the reducing layer's forward (``layer_forward``, over the layer structures
of ``anatomy``), the attention each token received (``attention``, and its Triton kernels), the
masks of shortened layers (``masks``), the reduced cache layers (``cache_layers``), each layer's
FLOPs (``layer_costs``) and the step timer (``step_timer``). Built on :mod:`espnet_fastadasp.core`
(the methods as tensor functions) and :mod:`espnet_fastadasp.models` (access to the model)."""
