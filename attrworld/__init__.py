"""The attribute world: a deterministic procedural image world with known attributes.

Images show one object whose shape, colour, texture, size and position are drawn from
small vocabularies (`spec`), rendered by `render`, described by `captions`; derived
classification datasets (`derived`) and zero-shot checks (`zeroshot`) build on them.
"""
