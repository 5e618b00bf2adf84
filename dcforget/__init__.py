"""dcforget: the foundation shared by the condense, unlearn and attacks stages.

Datasets and forget specs, the model zoo, the train/eval loop, checkpoint I/O, seeding and devices, errors.
"""

__version__ = "0.1.0"
