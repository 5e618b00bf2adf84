from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
exec((here / "dcforget" / "__init__.py").read_text(), version)

setup(
    name="dcforget",
    version=version["__version__"],
    description="Dataset-condensation-driven machine unlearning of image classifiers, with privacy attacks",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # every package and subpackage of the stages (a hand-written list left unlearn.reproduce out of the wheel)
    packages=find_packages(
        include=[
            "dcforget",
            "dcforget.*",
            "condense",
            "condense.*",
            "unlearn",
            "unlearn.*",
            "attacks",
            "attacks.*",
            "experiments",
            "experiments.*",
        ]
    ),
    # torch/torchvision are lower bounds only, so an installed CUDA build is kept as it is; scripts/setup.sh pins
    # the CPU pair (2.13.0 / 0.28.0) first on machines without a GPU.
    install_requires=[
        "torch>=2.2",
        "torchvision>=0.17",
        "kornia>=0.7",
        "numpy>=1.24",
        "h5py>=3.8",
        "click>=8.1",
        "tqdm>=4.60",  # progress bars with live postfix and a disable switch; click.progressbar has neither
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "import-linter>=2.0",
            "scikit-learn>=1.3",
            "opacus>=1.5",
            "matplotlib>=3.7",
            "ray>=2.9",
            "optuna>=3.5",
            "zennit>=0.5",
            "captum>=0.7",
            "hypothesis>=6.80",
            "ruff>=0.6",
        ],
        "lrp": ["zennit>=0.5"],
        # `unlearn concepts rank` (Integrated Gradients over the post-hoc CBM); imported only there
        "concepts": ["captum>=0.7"],  # the lrp-npp method's epsilon-LRP (zennit rules); imported only there
        "search": ["optuna>=3.5"],  # experiments tune (NSGA-III, journal storage); imported only there
        "ray": ["ray>=2.9"],  # the ray executor of dcforget.jobs (--executor ray); the default path never imports it
        "svhn": ["scipy"],  # torchvision's SVHN reader loads .mat files with scipy
        "attacks": ["scikit-learn>=1.3"],  # SalUn's SVC-MIA uses scikit-learn's SVC; we use the same
        "dp": ["opacus>=1.5"],
        # the documentation site (mkdocs.yml; `mkdocs build --strict` in .ci/run): File.generated needs mkdocs 1.6
        "docs": [
            "mkdocs>=1.6",
            "mkdocs-material>=9.5",
            "mkdocstrings[python]>=1.0",
            "mkdocstrings-python>=2.0",
            "mkdocs-click>=0.9",
        ],
        "plots": [
            "matplotlib>=3.7"
        ],  # figures of `unlearn reproduce` reports  # the DP-SGD baseline of `attacks defend` (per-sample clipping + accountant)
    },
    data_files=[
        (
            f"share/dcforget/{d.relative_to(here)}",  # experiment files, their forget index files, tuned options
            [str(p.relative_to(here)) for p in sorted(d.glob("*")) if p.suffix in (".toml", ".txt", ".json")],
        )
        for d in sorted({p.parent for p in (here / "configs").rglob("*") if p.suffix in (".toml", ".txt", ".json")})
    ],
    entry_points={
        "console_scripts": [
            "condense=condense.cli:main",
            "unlearn=experiments.cli:unlearn_main",
            "experiments=experiments.cli:main",
            "attacks=attacks.cli:main",
        ]
    },
)
