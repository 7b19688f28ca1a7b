"""Rule tests: YAML files in `<rules>/tests/` that state an availability situation, a cart and
the decision a merchandiser expects, run by `python -m engine test` (and `make test`)."""

from engine.rule_tests.runner import (
    Difference,
    RuleTestResult,
    compare,
    failure_report,
    run_folder,
    run_rule_test,
)
from engine.rule_tests.spec import (
    DEFAULT_NOW,
    TESTS_FOLDER,
    RuleTest,
    load_rule_tests,
    load_test_texts,
    rule_test_files,
)

__all__ = (
    "DEFAULT_NOW",
    "TESTS_FOLDER",
    "Difference",
    "RuleTest",
    "RuleTestResult",
    "compare",
    "failure_report",
    "load_rule_tests",
    "load_test_texts",
    "rule_test_files",
    "run_folder",
    "run_rule_test",
)
