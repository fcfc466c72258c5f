"""The keyword options are typed: mypy refuses a wrong type (``pool_size="2"``) or an unknown name in a call to any
of the middleware constructors, and accepts a correct call.

mypy runs on two small files in one process, with the repository's configuration and its ``.mypy_cache`` (shared
with ``make lint``), so a warm run takes well under a second; a cold one type-checks SQLAlchemy too (about 11 s).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

from .support import ROOT

RIGHT = '''
from sqlhttp_middleware.asgi import SQLHTTPMiddleware as ASGIMiddleware
from sqlhttp_middleware.auth import AuthContext
from sqlhttp_middleware.flask import SQLHTTP
from sqlhttp_middleware.options import Target
from sqlhttp_middleware.wsgi import SQLHTTPMiddleware


def allow(context: AuthContext) -> bool:
    return context.username != "guest"


SQLHTTPMiddleware(None, targets={"main": "postgresql://db:5432", "lite": Target("sqlite:///x.db", users={"a": "b"})},
                  pool_size=2, pool_timeout=5, cors_origins=["https://app.example"], authorize=allow)
ASGIMiddleware(None, targets={"main": "postgresql://db:5432"}, rate_limit_storage="memory", async_postgres=False,
               authorize=None)
SQLHTTP(None, pool_size=4, login_window=60.0)
'''

# One mistake a line; the option each one names.
WRONG = {
    'SQLHTTPMiddleware(None, pool_size="2")': "pool_size",
    'ASGIMiddleware(None, rate_limit_fail_open="no")': "rate_limit_fail_open",
    'SQLHTTP(None, pool_timeout="5")': "pool_timeout",
    "SQLHTTPMiddleware(None, pool_sise=2)": "pool_sise",
    'SQLHTTPMiddleware(None, targets=["postgresql://db:5432"])': "targets",
}
WRONG_HEADER = '''
from sqlhttp_middleware.asgi import SQLHTTPMiddleware as ASGIMiddleware
from sqlhttp_middleware.flask import SQLHTTP
from sqlhttp_middleware.wsgi import SQLHTTPMiddleware
'''


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[int, str]]:
    """mypy's errors on the right and the wrong file: file stem -> line -> messages."""
    folder = tmp_path_factory.mktemp("typed")
    right = folder / "typed_options_right.py"
    right.write_text(RIGHT)
    wrong = folder / "typed_options_wrong.py"
    wrong.write_text(WRONG_HEADER + "".join(line + "\n" for line in WRONG))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)  # mypy finds the package from the working directory, as ``make lint`` does
        stdout, stderr, _ = api.run([
            "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / ".mypy_cache"),
            "--no-error-summary", "--show-error-codes", str(right), str(wrong),
        ])
    assert not stderr, stderr
    found: dict[str, dict[int, str]] = {"typed_options_right": {}, "typed_options_wrong": {}}
    for line in stdout.splitlines():
        match = re.match(r"(.+?):(\d+): (error|note): (.*)", line)
        assert match, line
        if match[3] == "error":
            lines = found.setdefault(Path(match[1]).stem, {})  # errors in the package itself are make lint's
            lines[int(match[2])] = lines.get(int(match[2]), "") + match[4] + "\n"
    return found


def test_a_correct_call_type_checks_clean(mypy_errors: dict[str, dict[int, str]]) -> None:
    assert mypy_errors["typed_options_right"] == {}


@pytest.mark.parametrize("call", list(WRONG))
def test_a_wrong_option_is_a_type_error_naming_it(mypy_errors: dict[str, dict[int, str]], call: str) -> None:
    line = WRONG_HEADER.count("\n") + list(WRONG).index(call) + 1
    message = mypy_errors["typed_options_wrong"].get(line, "")
    assert f'"{WRONG[call]}"' in message, f"line {line} ({call}): {message or 'no error'}"
