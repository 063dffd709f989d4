"""Comparing decoded AMF values."""

from __future__ import annotations

from typing import Any

from ingest.protocol.amf0 import TypedObject


def assert_same(a: Any, b: Any) -> None:
    """Equal and of the same types all the way down (EcmaArray({}) == {} otherwise)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, TypedObject):
        assert a.class_name == b.class_name
        assert_same(a.fields, b.fields)
    else:
        assert a == b
