"""supervisor.classify: a batch of file changes -> restart / swap / assets / ignore.

Pure: configs are built in memory (one test loads a real .air.toml), paths need not exist.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from supervisor.classify import Change, Plan, classify, is_asset, is_template
from supervisor.config import Config, TemplatesConfig, load_config

ROOT = "/srv/app"


@pytest.fixture
def config() -> Config:
    return Config(root=Path(ROOT))


def with_templates(config: Config, **changes: Any) -> Config:
    return replace(config, templates=replace(config.templates, **changes))


def batch(*rel: str, change: Change = Change.modified) -> set[tuple[Change, str]]:
    return {(change, f"{ROOT}/{p}") for p in rel}


def full(*rel: str) -> tuple[str, ...]:
    return tuple(f"{ROOT}/{p}" for p in rel)


# --------------------------------------------------------------------------- single kinds


@pytest.mark.parametrize(
    "rel",
    ["templates/page.html", "app/templates/base.jinja", "t/x.jinja2", "mail.j2", "UP/PAGE.HTML"],
)
def test_a_template_swaps(config: Config, rel: str) -> None:
    plan = classify(batch(rel), config)
    assert plan == Plan("swap", templates=full(rel))
    assert plan.paths == full(rel) and not plan.css_only


@pytest.mark.parametrize(
    "rel",
    ["app.py", "pkg/models.py", "settings.toml", ".env", "requirements.txt", "Makefile",
     "templates/page.txt", "server.js", "public/views.py", "static/compile.py"],
)  # fmt: skip
def test_a_source_restarts(config: Config, rel: str) -> None:
    assert classify(batch(rel), config) == Plan("restart", sources=full(rel))


def test_css_anywhere_is_an_asset_and_css_only(config: Config) -> None:
    plan = classify(batch("static/site.css", "styles/app.css"), config)
    assert plan == Plan("assets", assets=full("static/site.css", "styles/app.css"))
    assert plan.css_only


@pytest.mark.parametrize(
    "rel",
    ["static/app.js", "public/img/logo.png", "assets/fonts/x.woff2", "dist/bundle.mjs",
     "app/static/icons/a.svg", "static/index.html", "static/data.json"],
)  # fmt: skip
def test_static_files_are_assets_but_not_css_only(config: Config, rel: str) -> None:
    plan = classify(batch(rel), config)
    assert plan == Plan("assets", assets=full(rel))
    assert not plan.css_only
    assert is_asset(full(rel)[0], config) and not is_template(full(rel)[0], config)


def test_css_only_needs_only_stylesheets(config: Config) -> None:
    assert not classify(batch("static/a.css", "static/a.js"), config).css_only
    assert Plan("assets", assets=("/x/A.CSS",)).css_only
    assert not Plan("ignore").css_only


def test_an_empty_batch_is_ignored(config: Config) -> None:
    plan = classify(set(), config)
    assert plan == Plan("ignore") and plan.paths == () and plan.describe(ROOT) == ""


# --------------------------------------------------------------------------- mixed batches


def test_any_source_in_a_batch_restarts_and_carries_the_rest(config: Config) -> None:
    plan = classify(batch("app.py", "templates/a.html", "static/s.css", "static/app.js"), config)
    assert plan.action == "restart"
    assert plan.sources == full("app.py")
    assert plan.templates == full("templates/a.html")
    assert plan.assets == full("static/app.js", "static/s.css")
    assert plan.paths == (*plan.sources, *plan.templates, *plan.assets)


def test_templates_and_assets_swap_with_the_assets_riding_along(config: Config) -> None:
    plan = classify(batch("templates/b.html", "templates/a.html", "static/s.css"), config)
    assert plan == Plan(
        "swap", templates=full("templates/a.html", "templates/b.html"), assets=full("static/s.css")
    )
    assert plan.css_only  # the stylesheets can still be swapped in place


def test_change_kinds_and_duplicates(config: Config) -> None:
    path = f"{ROOT}/templates/a.html"
    events = [(Change.added, path), (Change.modified, path), (Change.deleted, path)]
    assert classify(events, config) == Plan("swap", templates=(path,))
    assert classify(iter(batch("z.py", "a.py")), config).sources == full("a.py", "z.py")


def test_change_values_match_watchfiles() -> None:
    watchfiles = pytest.importorskip("watchfiles")
    for change in Change:
        assert watchfiles.Change[change.name].value == change.value
    raw = {(watchfiles.Change.modified, f"{ROOT}/templates/a.html")}
    assert classify(raw, Config(root=Path(ROOT))).action == "swap"


# --------------------------------------------------------------------------- [templates]


def test_include_dir_limits_templates(config: Config) -> None:
    cfg = with_templates(config, include_dir=("app/templates",))
    assert classify(batch("app/templates/x/page.html"), cfg).action == "swap"
    assert classify(batch("app/templates.html"), cfg).action == "restart"  # not a prefix match
    assert classify(batch("docs/page.html"), cfg).action == "restart"
    # an include_dir also makes a static dir's html a template
    static = with_templates(config, include_dir=("static",))
    assert classify(batch("static/index.html"), static).action == "swap"


def test_exclude_dir_makes_templates_restart(config: Config) -> None:
    cfg = with_templates(config, exclude_dir=("templates/emails",))
    assert classify(batch("templates/page.html"), cfg).action == "swap"
    plan = classify(batch("templates/emails/welcome.html"), cfg)
    assert plan == Plan("restart", sources=full("templates/emails/welcome.html"))


def test_include_and_exclude_dir_together(config: Config) -> None:
    cfg = with_templates(config, include_dir=("templates",), exclude_dir=("templates/legacy",))
    assert classify(batch("templates/a.html"), cfg).action == "swap"
    assert classify(batch("templates/legacy/a.html"), cfg).action == "restart"


def test_absolute_and_root_include_dirs(config: Config) -> None:
    shared = with_templates(config, include_dir=("/opt/shared/templates",))
    assert classify({(Change.modified, "/opt/shared/templates/a.html")}, shared).action == "swap"
    assert classify(batch("templates/a.html"), shared).action == "restart"
    everything = with_templates(config, include_dir=(".",))
    assert classify(batch("anywhere/a.html"), everything).action == "swap"
    assert classify({(Change.modified, "/elsewhere/a.html")}, everything).action == "restart"


def test_include_ext_decides_what_a_template_is(config: Config) -> None:
    cfg = with_templates(config, include_ext=("txt", "mako"))
    assert classify(batch("templates/mail.txt", "t/page.mako"), cfg).action == "swap"
    assert classify(batch("templates/page.html"), cfg).action == "restart"


def test_classify_with_a_loaded_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("air_wd", raising=False)
    (tmp_path / ".air.toml").write_text(
        '[templates]\ninclude_ext = [".HTML", "jinja"]\ninclude_dir = ["web/templates/"]\n'
        'exclude_dir = ["web/templates/partials"]\n'
    )
    cfg = load_config(tmp_path / ".air.toml", cwd=tmp_path, check_app=False)
    root = str(cfg.root)
    swap = classify({(Change.modified, f"{root}/web/templates/a.jinja")}, cfg)
    assert swap.action == "swap"
    partial = classify({(Change.modified, f"{root}/web/templates/partials/p.html")}, cfg)
    assert partial.action == "restart"
    assert cfg.templates == TemplatesConfig(
        include_ext=("html", "jinja"),
        include_dir=("web/templates",),
        exclude_dir=("web/templates/partials",),
    )


# --------------------------------------------------------------------------- describe()


def test_describe(config: Config) -> None:
    plan = classify(batch("app.py"), config)
    assert plan.describe(ROOT) == "app.py"
    assert plan.describe(ROOT + "/") == "app.py"
    assert plan.describe(Path(ROOT)) == "app.py"
    assert plan.describe() == f"{ROOT}/app.py"
    assert plan.describe("/other") == f"{ROOT}/app.py"
    assert plan.describe("/srv/ap") == f"{ROOT}/app.py"  # a prefix that is not a directory


def test_describe_lists_three_then_counts(config: Config) -> None:
    plan = classify(
        batch("b.py", "a.py", "templates/t.html", "static/s.css", "static/z.css"), config
    )
    assert plan.describe(ROOT) == "a.py, b.py, templates/t.html (+2 more)"
    two = classify(batch("a.py", "templates/t.html"), config)
    assert two.describe(ROOT) == "a.py, templates/t.html"


# --------------------------------------------------------------------------- rules and processes


def _with_rules_and_processes(config: Config) -> Config:
    from supervisor.config import ProcessConfig, RuleConfig

    rules = (
        RuleConfig.finish(0, {"name": "css", "cmd": "sass", "include_ext": ("scss",)}),
        RuleConfig.finish(1, {"cmd": "gen", "include_dir": ("api",), "exclude_regex": ("_x",)}),
        RuleConfig.finish(2, {"cmd": "all", "include_ext": ("*",), "include_dir": ("api",)}),
    )
    processes = (
        ProcessConfig.finish(0, {"name": "worker", "cmd": "w", "include_ext": ("py",)}),
        ProcessConfig.finish(1, {"name": "beat", "cmd": "b", "include_file": ("beat.toml",)}),
        ProcessConfig.finish(2, {"name": "web2", "cmd": "w2"}),  # restarts with the app
    )
    return replace(config, build=replace(config.build, rules=rules), process=processes)


def test_a_file_a_rule_matches_goes_to_that_rule_only(config: Config) -> None:
    config = _with_rules_and_processes(config)
    plan = classify(batch("assets/site.scss", "api/spec.yaml", "api/spec_x.yaml"), config)
    assert plan.action == "ignore" and plan.paths == ()
    # the first rule that matches wins; rule 1's exclude_regex passes spec_x on to rule 2
    assert plan.rules == ((0, full("assets/site.scss")), (1, full("api/spec.yaml")),
                          (2, full("api/spec_x.yaml")))  # fmt: skip
    assert plan.processes == ()


def test_a_rules_file_beside_a_source_file_restarts_for_the_source_only(config: Config) -> None:
    config = _with_rules_and_processes(config)
    plan = classify(batch("assets/site.scss", "app.py"), config)
    assert plan.action == "restart" and plan.sources == full("app.py")
    assert plan.rules == ((0, full("assets/site.scss")),)
    assert plan.processes == ("worker",)  # its include_ext matched app.py too


def test_a_processes_own_file_restarts_it_not_the_app(config: Config) -> None:
    config = _with_rules_and_processes(config)
    counts = lambda change, path: not path.endswith(".toml")  # noqa: E731 - the app's filter
    plan = classify(batch("beat.toml"), config, counts=counts)
    assert plan.action == "ignore" and plan.processes == ("beat",)
    assert classify(batch("beat.toml"), config).action == "restart"  # without a filter
