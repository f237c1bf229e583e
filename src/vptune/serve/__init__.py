"""HTTP serving of many tasks on one backbone: ``vptune serve`` (needs ``pip install vptune[serve]``)."""
