"""promptlab's Dassl layer: Dassl's API for trainer and dataset files, over promptlab's engine.

This folder (compat/) is on sys.path only in processes that load external trainer files; see
external/loader.py for why, and docs/EXTENDING.md for what is supported.
"""
