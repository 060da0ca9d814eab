"""YAML presets shipped with wmlab (core defaults, env presets, experiment presets)."""
