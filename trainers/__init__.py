"""Importing this package registers every trainer in TRAINER_REGISTRY."""
from trainers import coop, zsclip  # noqa: F401
from trainers import dear  # noqa: F401
from trainers import cocoop, ivlp, maple, promptsrc  # noqa: F401
