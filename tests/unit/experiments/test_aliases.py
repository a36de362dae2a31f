"""experiments/aliases.py: the alias table (the data dir's SQLite file, and a real Redis),
each change recorded with who, when, from and to; and set_alias's checks against the real
model store and the variants, which refuse a bad change without writing anything."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
import redis

from core.errors import DependencyUnavailable, InvalidRequest
from core.settings import Settings
from experiments.aliases import (
    AliasChange,
    Aliases,
    AliasReader,
    RedisAliases,
    SqliteAliases,
    alias_uses,
    open_aliases,
)
from experiments.catalog import catalog
from experiments.variants import ModelChoice, VariantsError, parse_experiment
from models.catalog import AliasRef, AliasTarget
from models.store import stored_versions


def versions(name: str, engine: str) -> list[str]:
    tags = [v.tag for v in stored_versions(name) if v.engine == engine]
    if not tags:
        pytest.skip(f"no {engine} version of {name} in the model store")
    return tags


@pytest.fixture(params=["sqlite", "redis"])
def table(request, tmp_path):
    if request.param == "sqlite":
        return open_aliases(tmp_path, None)
    server = request.getfixturevalue("redis_server")
    return open_aliases(tmp_path, server.url, redis_timeout_s=2.0)


def change(alias: str, model: str, by: str = "ops", engine: str = "torch") -> AliasChange:
    return AliasChange(alias, model, engine, "generator", by, time.time())


def test_each_change_records_who_when_from_and_to(table):
    assert table.current("challenger") is None and table.all() == []
    first = table.record(change("challenger", "rag-generator:aaa", by="alice"))
    assert (first.from_model, first.from_engine) == (None, None)
    second = table.record(change("challenger", "rag-generator:bbb", by="bob", engine="ct2"))
    assert (second.from_model, second.from_engine) == ("rag-generator:aaa", "torch")
    table.record(change("champion", "rag-generator:aaa"))
    assert table.current("challenger") == second
    assert [c.alias for c in table.all()] == ["challenger", "champion"]
    history = table.history(10)
    assert [(c.alias, c.by, c.model) for c in history] == [
        ("challenger", "alice", "rag-generator:aaa"),
        ("challenger", "bob", "rag-generator:bbb"),
        ("champion", "ops", "rag-generator:aaa"),
    ]
    assert history[0].at <= history[1].at <= history[2].at
    assert [c.model for c in table.history(1)] == ["rag-generator:aaa"]


def test_changes_at_once_each_record_what_the_one_before_set(table):
    def move(n: int) -> None:
        table.record(change("challenger", f"rag-generator:v{n}"))

    threads = [threading.Thread(target=move, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    history = table.history(50)
    assert len(history) == 12 and history[0].from_model is None
    for before, after in itertools.pairwise(history):
        assert after.from_model == before.model
    assert table.current("challenger") == history[-1]


def test_the_table_lives_with_the_experiment_state(tmp_path, redis_server):
    open_aliases(tmp_path, None).record(change("challenger", "rag-generator:aaa"))
    assert (tmp_path / "experiments.sqlite").is_file()
    # A second opening (another process, a restart) reads what the first wrote.
    assert isinstance(open_aliases(tmp_path, None), SqliteAliases)
    assert open_aliases(tmp_path, None).current("challenger").model == "rag-generator:aaa"
    other = tmp_path / "with-redis"
    on_redis = open_aliases(other, redis_server.url, redis_timeout_s=2.0)
    assert isinstance(on_redis, RedisAliases)
    on_redis.record(change("challenger", "rag-generator:bbb"))
    assert not other.exists()
    keys = {k.decode() for k in redis.Redis.from_url(redis_server.url).keys("*")}
    assert keys == {"rag:experiments:aliases", "rag:experiments:alias_changes"}


def test_the_reader_opens_the_table_at_its_first_look_up(tmp_path):
    data_dir = tmp_path / "data"
    reader = AliasReader(Settings(data_dir=data_dir))
    assert not data_dir.exists()  # building the service's plan creates nothing
    assert reader("challenger") is None
    SqliteAliases(data_dir / "experiments.sqlite").record(change("challenger", "m:1"))
    assert reader("challenger") == AliasTarget("m:1", "torch")


VARIANTS = """
variants:
  - {name: v1}
  - {name: v2, generator: {alias: challenger}}
  - {name: v3, generator: {alias: fast, engine: ct2}}
"""


@pytest.fixture()
def aliases(tmp_path) -> Aliases:
    experiment = parse_experiment(VARIANTS, "variants.yaml")
    return Aliases(SqliteAliases(tmp_path / "experiments.sqlite"), alias_uses(experiment))


def refused(aliases: Aliases, *args: str | None) -> str:
    before = aliases.history()
    with pytest.raises(InvalidRequest) as refusal:
        aliases.set(*args, by="ops")  # type: ignore[arg-type]
    assert aliases.history() == before  # nothing written
    return str(refusal.value)


def test_an_alias_is_set_to_an_exact_stored_version(aliases):
    torch_tag = versions("rag-generator", "torch")[0]
    entry, changed = aliases.set("challenger", torch_tag, None, by="ops")
    assert changed and (entry.model, entry.engine, entry.kind) == (torch_tag, "torch", "generator")
    assert entry.by == "ops" and entry.from_model is None
    # The same version again records nothing.
    again, changed = aliases.set("challenger", torch_tag, "torch", by="other")
    assert not changed and again == entry and len(aliases.history()) == 1


def test_a_bare_name_means_its_newest_version_of_the_engine(aliases):
    ct2_tag = versions("rag-generator", "ct2")[0]
    entry, _ = aliases.set("fast", "rag-generator", "ct2", by="ops")
    assert entry.model == ct2_tag
    entry, _ = aliases.set("spare", "rag-generator:latest", "ct2", by="ops")
    assert entry.model == ct2_tag


@pytest.mark.parametrize("name", ["Challenger", "9lives", "a" * 33, "with space", "", "a_b"])
def test_an_invalid_alias_name_is_refused(aliases, name):
    assert "is not a valid alias name" in refused(aliases, name, "rag-generator", None)


def test_a_version_the_store_does_not_hold_is_refused_naming_those_it_holds(aliases):
    message = refused(aliases, "challenger", "rag-generator:neverimported1", None)
    assert message.startswith("the model store holds no rag-generator:neverimported1;")
    for tag in versions("rag-generator", "torch") + versions("rag-generator", "ct2"):
        assert tag in message
    assert "holds no model named 'no-such-model'" in refused(
        aliases, "challenger", "no-such-model:abc", None
    )
    assert "is not a model-store tag" in refused(aliases, "challenger", "../etc:1", None)


def test_an_engine_that_does_not_match_the_version_is_refused(aliases):
    torch_tag = versions("rag-generator", "torch")[0]
    assert refused(aliases, "challenger", torch_tag, "ct2") == (
        f"{torch_tag} is a torch version, not ct2"
    )
    assert "is not one of" in refused(aliases, "challenger", torch_tag, "tensorrt")


def test_an_alias_a_variant_follows_takes_only_its_kind_and_engine(aliases):
    embedder_tag = versions("rag-embedder", "torch")[0]
    assert refused(aliases, "challenger", embedder_tag, None) == (
        f"alias 'challenger' is the generator of variant(s) v2; {embedder_tag} is an embedder"
    )
    torch_tag = versions("rag-generator", "torch")[0]
    assert refused(aliases, "fast", torch_tag, None) == (
        f"variant(s) v3 run alias 'fast' on ct2; {torch_tag} is a torch version"
    )
    # An alias no variant follows yet may name any stored version.
    entry, _ = aliases.set("spare", embedder_tag, None, by="ops")
    assert entry.kind == "embedder"


def test_a_failing_table_is_a_503_naming_it(tmp_path, redis_server):
    url = redis_server.url
    aliases = Aliases(RedisAliases(url, timeout_s=0.5), {})
    redis_server.stop()
    with pytest.raises(DependencyUnavailable, match="needs the alias table"):
        aliases.set("challenger", versions("rag-generator", "torch")[0], None, by="ops")


def test_variants_name_an_alias_or_a_model_and_only_for_the_generator():
    def problem(text: str) -> str:
        with pytest.raises(VariantsError) as refusal:
            parse_experiment(text, "v.yaml")
        return str(refusal.value)

    assert "give a model or an alias, not both" in problem(
        "variants: [{name: a, generator: {alias: x, model: 'rag-generator:latest'}}]"
    )
    assert "only generators may name an alias" in problem(
        "variants: [{name: a, embedder: {alias: x}}]"
    )
    assert "declared with engines 'ct2' and 'torch'" in problem(
        "variants: [{name: a, generator: {alias: x, engine: ct2}},"
        " {name: b, generator: {alias: x, engine: torch}}]"
    )
    assert "should match pattern" in problem("variants: [{name: a, generator: {alias: X}}]")


def test_one_service_per_alias_serving_the_settings_model_while_unset():
    experiment = parse_experiment(VARIANTS + "  - {name: v4, generator: {alias: fast}}\n", "v")
    defaults = {
        "embedder": ModelChoice(model="rag-embedder:latest", engine="onnx"),
        "generator": ModelChoice(model="rag-generator:latest", engine="torch"),
    }
    built = catalog(experiment, defaults, aliases=lambda alias: None, alias_refresh_s=1.0)
    generators = {v.service_name: v for v in built.of_kind("generator")}
    assert sorted(generators) == ["generator", "generator-alias-challenger", "generator-alias-fast"]
    fast = generators["generator-alias-fast"]
    assert (fast.model, fast.engine, fast.alias) == (
        "rag-generator:latest",
        "ct2",
        AliasRef("fast", "ct2"),
    )
    assert built.by_variant["v4"]["generator"] is fast is built.by_variant["v3"]["generator"]
    assert generators["generator-alias-challenger"].alias == AliasRef("challenger", None)
    # The incumbent's service keeps its plain name even when it follows an alias.
    first = parse_experiment("variants: [{name: a, generator: {alias: champion}}]", "v")
    (only,) = catalog(first, defaults, aliases=lambda alias: None).of_kind("generator")
    assert (only.service_name, only.alias) == ("generator", AliasRef("champion"))
