"""The import path documented before the package was split into layers; the code lives in
:mod:`espnet_fastadasp.generation.shared_prompt` (``fa.generate_with_shared_prompt`` is the short way)."""

from espnet_fastadasp.generation.shared_prompt import (  # noqa: F401
    SharedPromptLayer,
    generate_with_shared_prompt,
    shared_prompt_attention,
)
