"""Each test's call-phase report on its item, so a fixture can tell that the test failed
(the end-to-end test then saves a screenshot of the page)."""

from __future__ import annotations

import pytest


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.report_call = report
    return report
