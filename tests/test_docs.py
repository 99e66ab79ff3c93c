"""The README documents what the code declares."""

from pathlib import Path

from linohost.cli import cli
from linohost.model import config

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_has_the_config_reference_of_the_code():
    assert config.reference_table() in README


def test_readme_names_every_command():
    for name, cmd in cli.commands.items():
        subs = getattr(cmd, "commands", None)
        for full in ([f"{name} {s}" for s in subs] if subs else [name]):
            assert f"linohost {full}" in README, full
