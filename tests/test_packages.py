"""Which environment can take an adopted site, and the pins of a new one (pure)."""

from linohost.model import packages

SOURCE = {"Django": ["5.2.1", False], "lino": ["26.10.8", False],
          "lino_xl": ["26.10.3", False], "pip": ["24.0", False], "Jinja2": ["3.1.4", False],
          "my-plugin": ["0.1", True]}


def test_only_lino_packages_and_django_must_match():
    env = {"django": "5.2.1", "lino": "26.10.8", "lino-xl": "26.10.3", "jinja2": "3.0"}
    assert packages.mismatches(SOURCE, env) == []
    assert packages.mismatches(SOURCE, {**env, "lino-xl": "26.11.0"}) == [
        ("lino-xl", "26.10.3", "26.11.0")]
    assert packages.mismatches(SOURCE, {"lino": "26.10.8"})[0] == ("django", "5.2.1", None)


def test_pins_leave_out_the_installer_and_local_packages():
    assert packages.pins(SOURCE) == ["django==5.2.1", "jinja2==3.1.4", "lino==26.10.8",
                                     "lino-xl==26.10.3"]
    assert packages.local_lino(SOURCE) == []
    assert packages.local_lino({**SOURCE, "lino-cosi": ["26.1.dev0", True]}) == ["lino-cosi"]


def test_a_new_environment_is_named_by_its_lino_version():
    assert packages.env_name_for(SOURCE, []) == "lino-26-10-8"
    assert packages.env_name_for(SOURCE, ["lino-26-10-8"]) == "lino-26-10-8-2"
