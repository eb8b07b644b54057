"""Every chapter parameter has a rule, its default obeys it, and plain papermill sees all of them."""
import pytest

from oversmoothing import book
from oversmoothing.parameters import RULES, ParameterError, check

ROOT = book.find_root()
CHAPTERS = book.chapters(ROOT)


@pytest.mark.parametrize("ch", CHAPTERS, ids=lambda c: c.stem)
def test_every_parameter_has_a_rule_and_its_default_obeys_it(ch):
    params = book.parse_parameters(ch.path)
    missing = [n for n in params if n not in RULES]
    assert not missing, f"{ch.stem}: no rule in oversmoothing.parameters.RULES for {missing}"
    for p in params.values():
        check(p.name, p.default, ch.stem)


@pytest.mark.parametrize("ch", CHAPTERS, ids=lambda c: c.stem)
def test_papermill_lists_the_same_parameters_as_the_runner(ch):
    import papermill

    listed = papermill.inspect_notebook(str(ch.path))
    assert list(listed) == list(book.parse_parameters(ch.path)), (
        f"{ch.stem}: papermill skips a parameter line whose comment contains '='")


def test_profiles_obey_the_rules():
    profiles = book.load_profiles(ROOT)
    for name, chapters in profiles.items():
        for stem, overrides in (chapters or {}).items():
            for k, v in (overrides or {}).items():
                check(k, v, f"{stem} ({name} profile)")


def test_rule_messages_name_the_value_and_what_is_accepted():
    with pytest.raises(ParameterError, match=r"depth = -3 is not accepted: expected an integer >= 1"):
        check("depth", -3)
    with pytest.raises(ParameterError, match=r"dataset = 'corra'.*one of 'cora'"):
        check("dataset", "corra")
    with pytest.raises(ParameterError, match="no rule"):
        check("not_a_parameter", 1)
    assert check("depth", 4.0) == 4 and check("lambdas", [0.16, 0.84]) == [0.16, 0.84]
