from pathlib import Path

import pytest

from gateway.settings import FormatError, load_settings

GOOD = """\
policy: round_robin
profiles: profs
workers:
  - {id: a, pool: p, arch: nvidia-t4, url: "http://127.0.0.1:1/", models: [resnet50]}
  - {id: b, pool: q, arch: nvidia-a100, url: "http://127.0.0.1:2", grpc_url: "127.0.0.1:3",
     metrics_url: "http://127.0.0.1:4/metrics", instances: 2, rtt_ms: 1.5, models: [bert-base]}
models:
  resnet50: {slo_ms: 50, priority: 1, category: latency, idempotent: true}
admin_token: s3cret
request_timeout_s: 5
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for k in list(os.environ):
        if k.startswith("SYNERGAI_") or k == "REDIS_URL":
            monkeypatch.delenv(k)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gw.yaml"
    p.write_text(text)
    return p


def test_config_file_loads(tmp_path: Path) -> None:
    s = load_settings(_write(tmp_path, GOOD))
    assert s.policy == "round_robin"
    assert s.profiles == (tmp_path / "profs").resolve()
    assert [w.id for w in s.workers] == ["a", "b"]
    infos = s.worker_infos()
    assert infos[0].url == "http://127.0.0.1:1"  # trailing slash dropped
    assert infos[1].instances == 2 and infos[1].rtt_ms == 1.5
    assert s.model_defaults("resnet50").slo_ms == 50
    assert s.model_defaults("other").slo_ms == s.default_slo_ms
    assert s.admin_token is not None and s.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.request_timeout_s == 5


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("polcy: x\n", "gw.yaml:1: polcy: unknown key 'polcy'"),
        (
            "workers:\n  - id: a\n    pool: p\n    arch: x\n    url: u\n    models: [m]\n"
            "    modles: [m]\n",
            "gw.yaml:7: workers.[0].modles: unknown key",
        ),
        ("models:\n  m: {slo_ms: -1}\n", "gw.yaml:2: models.m.slo_ms"),
        ("port: many\n", "gw.yaml:1: port"),
        ("- a\n", "must be a mapping"),
    ],
)
def test_config_errors_name_file_line_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(FormatError) as info:
        load_settings(_write(tmp_path, text))
    assert needle.replace("workers.[0]", "workers[0]") in str(info.value).replace(
        "workers.[0]", "workers[0]"
    )


def test_duplicate_worker_ids_rejected(tmp_path: Path) -> None:
    w = '  - {id: a, pool: p, arch: x, url: "http://h:1", models: [m]}\n'
    with pytest.raises(FormatError, match="duplicate worker id"):
        load_settings(_write(tmp_path, "workers:\n" + w + w))


def test_priority_flags_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "port: 1000\npolicy: random\n")
    monkeypatch.setenv("SYNERGAI_PORT", "2000")
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/0")
    s = load_settings(path)
    assert (s.port, s.policy, s.redis_url) == (2000, "random", "redis://r:6379/0")
    s = load_settings(path, port=3000, grpc_port=None)
    assert s.port == 3000 and s.grpc_port == 8081  # None flags are ignored


def test_bad_env_value_is_format_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNERGAI_PORT", "-3")
    with pytest.raises(FormatError, match="port"):
        load_settings(None)


def test_config_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNERGAI_CONFIG", str(_write(tmp_path, "policy: p2c\n")))
    assert load_settings(None).policy == "p2c"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot read"):
        load_settings(tmp_path / "nope.yaml")


def test_overhead_ms_reaches_the_predictor(tmp_path: Path) -> None:
    # the live path's fixed cost is read as network time by the view (PredictorConfig)
    from gateway.app import AppDeps, create_app
    from gateway.prediction.profiles import default_profiles_dir, load_profiles

    assert load_settings(_write(tmp_path, GOOD)).overhead_ms == 0.0
    s = load_settings(_write(tmp_path, GOOD + "overhead_ms: 2.5\n"))
    assert s.overhead_ms == 2.5
    app = create_app(s, AppDeps(profiles=load_profiles(default_profiles_dir()), collectors=False))
    view = app.state.service.view
    assert view.cfg.overhead_ms == 2.5
    assert view.state("a").rtt_ms == 2.5 and view.state("b").rtt_ms == 4.0
    with pytest.raises(FormatError, match="overhead_ms"):
        load_settings(_write(tmp_path, GOOD + "overhead_ms: -1\n"))
