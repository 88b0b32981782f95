"""Comparison tables of the output tree (tools/compare.py): reading runs (tree), statistics over
seeds and datasets (stats), one module per protocol (base2new, transfer, fewshot), published
numbers (reported), rendering (format, plot) and the command line (command)."""
