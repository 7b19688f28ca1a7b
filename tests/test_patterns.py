"""`engine.model.whole`: the patterns msgspec checks (with `re.search`) match whole strings, a
final newline included, and `schema_pattern` gives them to JSON Schema unchanged in meaning."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.model import CHANNEL_PATTERN, NO_SPACES, schema_pattern, whole
from engine.policy.schema import NAME_PATTERN, URL_PATTERN

BODIES = {
    NO_SPACES: r"\S+",
    CHANNEL_PATTERN: r"[a-z0-9][a-z0-9_-]*",
    NAME_PATTERN: r"[a-z0-9][a-z0-9_.-]*",
    URL_PATTERN: r"https?://[^\s/]+(/\S*)?",
}
"""Each pattern in use, and what the whole string must match."""

TEXT = st.text(alphabet=st.sampled_from("ab-_./: \t\n\r\x0b\xa0AZ09hpst"), max_size=12)


@pytest.mark.parametrize("pattern", list(BODIES), ids=["no-spaces", "channel", "name", "url"])
@given(text=TEXT)
def test_a_pattern_matches_exactly_the_strings_its_body_matches_whole(
    pattern: str, text: str
) -> None:
    assert (re.search(pattern, text) is not None) == (
        re.fullmatch(BODIES[pattern], text) is not None
    )
    # ...and with a final newline, never.
    assert re.search(pattern, text + "\n") is None


@pytest.mark.parametrize(
    ("value", "valid"),
    [("web", True), ("web\n", False), ("web\n\n", False), ("\nweb", False), ("Web", False)],
)
def test_msgspec_checks_the_whole_string(value: str, valid: bool) -> None:
    channel = Annotated[str, msgspec.Meta(pattern=CHANNEL_PATTERN)]
    if valid:
        assert msgspec.convert(value, channel) == value
    else:
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(value, channel)


def test_alternatives_stay_inside_the_anchors() -> None:
    either = whole("ab|cd")
    assert re.search(either, "cd")
    assert re.search(either, "ab")
    assert not re.search(either, "xxcd")
    assert not re.search(either, "abxx")


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("https://api.example.com", True),
        ("http://127.0.0.1:8100/v1/", True),
        ("ftp://api.example.com", False),
        ("https://", False),
        ("https://api example.com", False),
        ("https://api.example.com/a b", False),
        ("https://api.example.com\n", False),
    ],
)
def test_urls(url: str, valid: bool) -> None:
    # The alphabet above seldom spells a URL: the ones that matter, written out.
    assert (re.search(URL_PATTERN, url) is not None) is valid


def test_the_schema_pattern_is_the_pattern_without_its_lookahead() -> None:
    assert schema_pattern(NO_SPACES) == r"^(?:\S+)$"
    assert schema_pattern(CHANNEL_PATTERN) == r"^(?:[a-z0-9][a-z0-9_-]*)$"
    assert schema_pattern(r"^a$") == r"^a$"  # a pattern not built by `whole` is left as it is
