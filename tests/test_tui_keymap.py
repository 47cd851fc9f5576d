"""The user's keymap from config.toml: the console's bindings remapped by id, shown
remapped in the footer and in help, and a wrong id or theme refused with its line."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Footer

from console import config
from console.app import console_settings, keymap_rows
from console.core.errors import InputError
from screens.dashboard import DashboardScreen
from screens.help import HelpScreen, help_table
from tests.test_tui_helpers import SIZE, _private_config, make_app  # noqa: F401
from tests.waiting import settled


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config" / "rolldeck" / "config.toml"  # XDG_CONFIG_HOME (autouse)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def footer_keys(app: object) -> dict[str, str]:
    from textual.widgets._footer import FooterKey

    footer = app.screen.query_one(Footer)  # type: ignore[attr-defined]
    return {k.description: k.key for k in footer.query(FooterKey)}


async def test_remapped_keys_work_and_show_in_footer_and_help(tmp_path: Path) -> None:
    write(tmp_path, 'theme = "rolldeck-light"\n[keymap]\npause = "space"\nabort = "ctrl+x"\n')
    settings = console_settings()
    assert settings == {
        "theme": "rolldeck-light",
        "keymap": {"pause": "space", "abort": "ctrl+x"},
    }
    app, ctl, _bus, _r = make_app("running", **settings)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        assert app.theme == "rolldeck-light"
        keys = footer_keys(app)
        assert keys["Pause"] == "space" and keys["Abort"] == "ctrl+x"
        await pilot.press("p")  # the old key does nothing now
        await settled(pilot, DashboardScreen)
        assert ctl.commands == []
        await pilot.press("space")
        await settled(pilot, DashboardScreen)
        assert ctl.names() == ["pause"]

        await pilot.press("question_mark")
        await settled(pilot, HelpScreen)
        assert isinstance(app.screen, HelpScreen)
        grids = [
            t
            for t in help_table(app.screen.sections, app.screen.keymap).renderables
            if hasattr(t, "columns")
        ]
        rows = {
            str(d): str(k)
            for g in grids
            for k, d in zip(g.columns[0]._cells, g.columns[1]._cells, strict=True)
        }
        assert rows["Pause"] == "space" and rows["Abort"] == "ctrl+x" and rows["Continue"] == "c"


def test_config_keys_lists_ids_with_their_remapped_keys() -> None:
    rows = {bid: keys for _, bid, keys, _ in keymap_rows({"pause": "space"})}
    assert rows["pause"] == "space" and rows["rollback"] == "r" and rows["help"] == "?"


@pytest.mark.parametrize(
    "text,line,field,fragment",
    [
        ('[keymap]\npause = "space"\npuase = "x"\n', 3, "keymap.puase", "did you mean 'pause'?"),
        ('\ntheme = "rolldeck-pink"\n', 2, "theme", "unknown theme 'rolldeck-pink'"),
    ],
)
def test_a_wrong_binding_id_or_theme_names_the_line(
    tmp_path: Path, text: str, line: int, field: str, fragment: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        console_settings(config.load())
    err = info.value
    assert (err.file, err.line, err.field) == (str(path), line, field)
    assert fragment in err.message
