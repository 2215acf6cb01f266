"""The interop matrix is rendered from results: grouping, names, counts, versions."""

from __future__ import annotations

from tests.interop.matrix import Scenario, render, scenario_name


def test_scenario_names_keep_their_parameters() -> None:
    assert scenario_name("test_call_from_asterisk[rewrite-contact-yes]") == (
        "call from asterisk [rewrite-contact-yes]"
    )
    assert scenario_name("test_register_once") == "register once"


def test_render_groups_by_module_and_counts_passes() -> None:
    scenarios = [
        Scenario("tests/interop/test_b.py", "B peer", "second", "failed"),
        Scenario("tests/interop/test_a.py", "A peer", "zeta", "passed"),
        Scenario("tests/interop/test_a.py", "A peer", "alpha", "passed"),
    ]
    text = render(scenarios, {"Asterisk": "22.10.1"})
    assert "| Asterisk | 22.10.1 |" in text
    assert "2 of 3 scenarios passed." in text
    assert text.index("## A peer") < text.index("## B peer")
    assert text.index("| alpha | ✅ passed |") < text.index("| zeta | ✅ passed |")
    assert "| second | ❌ failed |" in text
