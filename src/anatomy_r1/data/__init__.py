"""Data layer: the canonical record, converters from public formats, and the synthetic benchmark."""
