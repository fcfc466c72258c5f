"""The docs keep up with the code: every option and every error code is documented, with the right values."""

from __future__ import annotations

import re

from sqlhttp_middleware.errors import all_error_classes
from sqlhttp_middleware.options import OPTIONS, OptionKeywords

from .support import ROOT, table_rows


def test_every_option_is_documented_with_its_default() -> None:
    documented = {row[0].strip("`"): row[1] for row in table_rows("docs/configuration.md")}
    for option in OPTIONS:
        assert option.name in documented, f"{option.name} is missing from docs/configuration.md"
        if option.default is not None:
            assert documented[option.name].strip("`").strip('"') == str(option.default), option.name
    assert set(documented) >= {option.name for option in OPTIONS}


def test_the_typed_keywords_are_the_options_table() -> None:
    # What type checkers accept and what the middleware reads must be one list, in one order.
    assert list(OptionKeywords.__annotations__) == [option.name for option in OPTIONS]
    assert OptionKeywords.__required_keys__ == frozenset()  # every option has a default, or fails at start-up


def test_every_error_code_is_documented_with_its_status() -> None:
    rows = table_rows("docs/protocols/polyscale.md")
    documented = {row[1].strip("`"): int(row[0]) for row in rows if row[0].isdigit()}
    for cls in all_error_classes(sessions=False):
        assert documented.get(cls.code) == cls.status, f"{cls.code} ({cls.status}) is not in the PolyScale page"
    assert set(documented) == {cls.code for cls in all_error_classes(sessions=False)}


def test_readme_gives_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), link


def test_libsql_page_documents_the_codes_hrana_answers() -> None:
    from sqlhttp_middleware.protocols.hrana.pipeline import _CODES

    rows = table_rows("docs/protocols/libsql.md")
    statuses = {code: int(row[0]) for row in rows if row[0].isdigit() for code in re.findall(r"`([A-Z_]+)`", row[1])}
    for cls in all_error_classes():
        if cls.sessions_only and not cls.__subclasses__():  # a stream's refusals (the base is never raised)
            assert statuses.get(cls.code) == cls.status, f"{cls.code} ({cls.status}) is not in the libSQL page"
    inside = {code for row in rows for code in re.findall(r"^`([A-Z_]+)`$", row[0])}
    assert set(_CODES.values()) <= inside, "a code libSQL's pipelines answer is not in the libSQL page"
