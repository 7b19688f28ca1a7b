"""Rules: the YAML schema, loading with line-accurate problems, and compiling into a `RuleSet`."""

from engine.policy.compile import (
    CartRules,
    Location,
    Origin,
    RuleSet,
    compile_files,
    load_rule_set,
    load_rule_set_texts,
)
from engine.policy.load import load_folder, load_texts

__all__ = (
    "CartRules",
    "Location",
    "Origin",
    "RuleSet",
    "compile_files",
    "load_folder",
    "load_rule_set",
    "load_rule_set_texts",
    "load_texts",
)
