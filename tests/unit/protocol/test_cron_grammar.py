"""The SDK refuses every cron expression the API server's CEL pattern refuses, naming the
field: ``validate_cron`` reads it with cronsim, then checks the ``CRON_PATTERN`` the CRD
carries, for what cronsim reads and the API server does not."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubetasks.errors import InvalidScheduleError
from kubetasks.protocol.cron import CRON_PATTERN, validate_cron

# Python's re reads this RE2 pattern once the leading inline flag is a compile flag.
API_SERVER = re.compile(CRON_PATTERN.replace("^(?i)", "^", 1), re.IGNORECASE)
PIECES = ["*", "*/5", "*/99", "*/100", "*/0", "0", "7", "01", "59", "60", "1-5", "5-1",
          "1-5/2", "0/5", "1,2", "1-3,5", "L", "LW", "L-2", "15W", "5L", "5#2", "5#6", "MON",
          "mon-fri", "JAN", "?", "H", "@daily"]


@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=7))
def test_what_the_api_server_refuses_the_sdk_refuses_first(fields: list[str]) -> None:
    expression = " ".join(fields)
    try:
        validate_cron(expression)
    except InvalidScheduleError:
        return
    assert API_SERVER.match(expression), f"{expression!r} passed the SDK, not the API"


@pytest.mark.parametrize(("expression", "message"), [
    ("0 2 * * * *", r"has 6 field\(s\), not 5; use five fields"),
    ("*/100 * * * *", r"the minute field '\*/100' is not valid; it takes 0-59"),
    ("0 */100 * * *", r"the hour field '\*/100' is not valid; it takes 0-23"),
    ("0 2 */100 * *", r"the day-of-month field '\*/100' is not valid; it takes 1-31, L, LW"),
    ("0 2 * */100 *", r"the month field '\*/100' is not valid; it takes 1-12, JAN-DEC"),
    ("0 2 * * 01", "the day-of-week field '01' is not valid; it takes 0-7, SUN-SAT"),
    ("0 24 * * *", "Bad hour; use five fields"),  # cronsim's word, where it has one
])
def test_the_message_names_the_field(expression: str, message: str) -> None:
    with pytest.raises(InvalidScheduleError, match=message):
        validate_cron(expression)
