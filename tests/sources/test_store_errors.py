"""The one mapping of object-store failures: complete, and right for loads and saves."""

from __future__ import annotations

import inspect

import pytest
from obstore import exceptions as obs_errors

from pagefault.errors import CheckpointError, IntegrityError, NotFound, PagefaultError, SourceError
from pagefault.sources.store_errors import STORE_ERRORS, StoreFailure, map_store_errors

OBSTORE_ERRORS = [
    cls for _, cls in inspect.getmembers(obs_errors, inspect.isclass) if issubclass(cls, Exception)
]
LOAD_CLASS = {
    StoreFailure.MISSING: NotFound,
    StoreFailure.CHANGED: IntegrityError,
    StoreFailure.DENIED: SourceError,
}


def test_every_obstore_exception_class_is_mapped() -> None:
    """Fails when an obstore upgrade adds a class the table does not name (as httpx tests
    its transports' exceptions)."""
    assert OBSTORE_ERRORS, "obstore.exceptions defines no exception classes?"
    missing = [cls.__name__ for cls in OBSTORE_ERRORS if cls not in STORE_ERRORS]
    assert missing == []


@pytest.mark.parametrize("cls", OBSTORE_ERRORS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("saving", [False, True], ids=["load", "save"])
def test_each_becomes_the_precise_error_naming_the_object(cls: type, saving: bool) -> None:
    with pytest.raises(PagefaultError) as info, map_store_errors("s3://b/k", saving=saving):
        raise cls("boom\nsecond line")
    error = info.value
    expected = CheckpointError if saving else LOAD_CLASS.get(STORE_ERRORS[cls], SourceError)
    assert type(error) is expected
    assert str(error).startswith("s3://b/k: ") and "second line" not in str(error)
    assert error.__cause__ is not None


def test_denied_status_in_a_generic_error_hints_at_credentials() -> None:
    for saving in (False, True):
        with (
            pytest.raises(PagefaultError, match="access denied.*AWS_\\*, GOOGLE_\\*, AZURE_\\*"),
            map_store_errors("s3://b/k", saving=saving),
        ):
            raise obs_errors.GenericError("HTTP status 403 Forbidden")


def test_pagefault_errors_pass_through_unchanged() -> None:
    original = IntegrityError("piece 3 failed its checksum")
    with pytest.raises(IntegrityError) as info, map_store_errors("s3://b/k"):
        raise original
    assert info.value is original
